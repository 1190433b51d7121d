"""What a flow or task run ends in, given what its body returned (Prefect 3's
`return_value_to_state`), and what its caller gets; each case sync and async.

Every expectation here was observed with Prefect 3.8.8.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.exceptions import FailedRun
from flowbus.results import ResultStore
from flowbus.states import (
    Cancelled,
    Completed,
    Failed,
    Paused,
    State,
    StateType,
    return_value_to_state,
)


def run_both(body: Callable[[], Any]) -> list[tuple[Any, State[Any]]]:
    """Call a sync and an async flow with the same body: (what the call gave, final state)."""

    @flow
    def sync_flow() -> Any:
        return body()

    @flow
    async def async_flow() -> Any:
        return body()

    out = []
    for call, call_state in (
        (lambda: sync_flow(), lambda: sync_flow(return_state=True)),
        (lambda: asyncio.run(async_flow()), lambda: asyncio.run(async_flow(return_state=True))),
    ):
        try:
            value = call()
        except Exception as exc:
            value = exc
        out.append((value, call_state()))
    return out


def test_a_returned_completed_state_is_the_runs_state_and_its_data_the_result() -> None:
    for value, state in run_both(lambda: Completed(message="ok", data=5)):
        assert value == 5
        assert state.is_completed() and state.message == "ok" and state.result() == 5


def test_a_returned_failed_state_fails_the_run_and_the_call_raises() -> None:
    for value, state in run_both(lambda: Failed(message="bad")):
        assert isinstance(value, FailedRun) and str(value) == "bad"
        assert state.is_failed() and state.message == "bad"


def test_a_tuple_or_dict_holding_a_failed_state_next_to_values_completes_as_is() -> None:
    for container in (lambda: (Failed(message="x"), 1), lambda: {"a": Failed(message="x"), "b": 1}):
        for value, state in run_both(container):
            assert state.is_completed() and state.message is None
            inner = value[0] if isinstance(value, tuple) else value["a"]
            assert isinstance(inner, State) and inner.is_failed()
            assert (value[1] if isinstance(value, tuple) else value["b"]) == 1


def test_a_list_of_states_aggregates_but_the_caller_gets_the_list() -> None:
    for value, state in run_both(lambda: [Completed(data=1), Failed(message="x")]):
        assert state.is_failed() and state.message == "1/2 states failed."
        assert [s.type for s in value] == [StateType.COMPLETED, StateType.FAILED]
    for value, state in run_both(lambda: [Completed(data=1), Completed(data=2)]):
        assert state.is_completed() and state.message == "All states completed."
        assert [s.result() for s in value] == [1, 2]


@pytest.mark.parametrize(
    ("states", "type_", "message"),
    [
        ([Cancelled(), Failed()], StateType.CANCELLED, "1/2 states cancelled."),
        ([Paused(), Completed()], StateType.PAUSED, "1/2 states paused."),
        ([State(StateType.RUNNING), Completed()], StateType.FAILED, "1/2 states are not final."),
        ((Completed(), Failed(), Failed()), StateType.FAILED, "2/3 states failed."),
    ],
)
def test_the_aggregate_rule_orders_cancelled_paused_failed(states: Any, type_: StateType, message: str) -> None:
    for _, state in run_both(lambda: states):
        assert (state.type, state.message) == (type_, message)


def test_a_returned_generator_is_consumed() -> None:
    for value, state in run_both(lambda: (i * i for i in range(3))):
        assert value == [0, 1, 4] and state.result() == [0, 1, 4]


def test_an_empty_list_is_a_plain_value() -> None:
    for value, state in run_both(lambda: []):
        assert value == [] and state.is_completed() and state.message is None


@task
def double(x: int) -> int:
    return 2 * x


@task
def boom() -> int:
    raise ValueError("boom")


@task
def chosen_failure() -> State[Any]:
    return Failed(message="task-bad")


def test_returned_futures_become_their_final_states() -> None:
    @flow
    def f() -> Any:
        return [double.submit(1), double.submit(2)]

    value = f()
    assert [s.result() for s in value] == [2, 4]
    assert f(return_state=True).message == "All states completed."


def test_a_returned_failed_future_fails_the_flow_with_the_tasks_error() -> None:
    @flow
    def f() -> Any:
        return boom.submit()

    with pytest.raises(ValueError, match="boom"):
        f()
    state = f(return_state=True)
    assert state.is_failed() and state.message == "1/1 states failed."


def test_a_future_in_a_tuple_with_values_is_returned_as_its_state() -> None:
    @flow
    def f() -> Any:
        return (double.submit(1), 5)

    value = f()
    assert isinstance(value[0], State) and value[0].result() == 2 and value[1] == 5


def test_a_returned_task_state_is_aggregated() -> None:
    @flow
    def f() -> Any:
        return chosen_failure(return_state=True)

    with pytest.raises(FailedRun, match="task-bad"):
        f()
    state = f(return_state=True)
    assert state.is_failed() and state.message == "1/1 states failed."
    assert isinstance(state.data, State) and state.data.message == "task-bad"


def test_an_inline_task_returning_a_state_gives_the_caller_that_state() -> None:
    state = chosen_failure()
    assert isinstance(state, State) and state.is_failed() and state.message == "task-bad"
    assert chosen_failure(return_state=True).message == "task-bad"

    @task
    def fine() -> State[int]:
        return Completed(message="fine", data=7)

    assert fine().result() == 7

    @flow
    def f() -> Any:
        return fine()  # the task's own state: aggregated, and what the caller gets

    assert f().message == "fine"
    assert f(return_state=True).message == "All states completed."


async def test_an_async_inline_task_returning_a_state_gives_that_state() -> None:
    @task
    async def afail() -> State[Any]:
        return Failed(message="atask-bad")

    @flow
    async def f() -> Any:
        return ("inline", await afail())

    value = await f()
    assert value[0] == "inline" and value[1].is_failed() and value[1].message == "atask-bad"


def test_submitted_and_mapped_tasks_returning_a_failed_state_raise_on_result() -> None:
    @task
    def fails(x: int) -> State[Any]:
        return Failed(message=f"bad{x}")

    @flow
    def f() -> list[tuple[str, str]]:
        out = []
        for future in [fails.submit(0), *fails.map([1, 2])]:
            future.wait()
            assert future.state.is_failed()
            try:
                future.result()
            except FailedRun as exc:
                out.append(("raised", str(exc)))
        return out

    assert f() == [("raised", "bad0"), ("raised", "bad1"), ("raised", "bad2")]


def test_a_task_returning_a_failed_state_is_retried() -> None:
    attempts: list[int] = []

    @task(retries=2)
    def flaky() -> Any:
        attempts.append(1)
        return Failed(message="again") if len(attempts) < 3 else "done"

    assert flaky() == "done" and len(attempts) == 3


def test_return_value_to_state_keeps_a_manual_state_and_aggregates_a_run_state() -> None:
    store = ResultStore()
    manual = Completed(data=1)
    assert asyncio.run(return_value_to_state(manual, store)) is manual
    run_state = double(1, return_state=True)
    assert run_state.state_details.task_run_id is not None
    aggregate = asyncio.run(return_value_to_state(run_state, store))
    assert aggregate is not run_state and aggregate.data.result is run_state
    mixed = asyncio.run(return_value_to_state({"a": manual}, store))
    assert mixed.is_completed() and mixed.data.result == {"a": manual}


class _NoTruth:
    """Like a DataFrame: asking for its truth value is an error."""

    def __bool__(self) -> bool:
        raise ValueError("The truth value is ambiguous")


def test_values_without_a_truth_value_are_returned_untouched() -> None:
    value = _NoTruth()

    @task
    def t() -> _NoTruth:
        return value

    @flow
    def f() -> _NoTruth:
        return t()

    assert f() is value and t() is value
