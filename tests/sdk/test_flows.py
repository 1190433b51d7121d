from __future__ import annotations

import asyncio

import pytest

from flowbus import Flow, flow, task
from flowbus.exceptions import ParameterTypeError
from flowbus.runtime import flow_run
from flowbus.states import Completed, Failed, State


def test_bare_flow_runs_and_takes_its_name_and_description_from_the_function() -> None:
    @flow
    def my_etl_flow(x: int) -> int:
        """Doubles x."""
        return 2 * x

    assert isinstance(my_etl_flow, Flow)
    assert my_etl_flow.name == "my-etl-flow"
    assert my_etl_flow.description == "Doubles x."
    assert my_etl_flow(21) == 42


def test_flow_with_options_keeps_the_given_name_and_version() -> None:
    @flow(name="custom", version="1.2", description="d")
    def f() -> str:
        return "ok"

    assert (f.name, f.version, f.description) == ("custom", "1.2", "d")
    assert f() == "ok"


async def test_async_flow_returns_a_coroutine_that_runs_the_flow() -> None:
    @task
    async def inc(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @flow
    async def main(x: int) -> int:
        return await inc(x)

    assert await main(1) == 2


def test_return_state_gives_the_final_state_instead_of_raising() -> None:
    @flow
    def boom() -> None:
        raise ValueError("bad")

    state = boom(return_state=True)
    assert isinstance(state, State)
    assert state.is_failed()
    with pytest.raises(ValueError, match="bad"):
        state.result()
    assert isinstance(state.result(raise_on_failure=False), ValueError)


def test_failing_flow_raises_the_body_exception() -> None:
    @flow
    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        boom()


def test_subflow_gets_its_own_run_id_and_state(sink) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, str | None] = {}

    @flow
    def child() -> str | None:
        seen["child"] = flow_run.id
        seen["parent_of_child"] = flow_run.parent_flow_run_id
        return flow_run.id

    @flow
    def parent() -> State[str | None]:
        seen["parent"] = flow_run.id
        return child(return_state=True)  # type: ignore[no-any-return]

    state = parent(return_state=True)
    assert state.is_completed()
    assert seen["child"] != seen["parent"]
    assert seen["parent_of_child"] == seen["parent"]
    runs = sink.runs("flow-run")
    assert runs[seen["child"]] == ["Pending", "Running", "Completed"]
    assert runs[seen["parent"]] == ["Pending", "Running", "Completed"]


def test_flow_run_name_template_uses_parameters() -> None:
    @flow(flow_run_name="ingest-{day}")
    def ingest(day: str) -> str | None:
        return flow_run.name

    assert ingest("2024-01-01") == "ingest-2024-01-01"


def test_flow_run_name_callable() -> None:
    @flow(flow_run_name=lambda: "from-callable")
    def f() -> str | None:
        return flow_run.name

    assert f() == "from-callable"


def test_validate_parameters_coerces_to_type_hints() -> None:
    @flow
    def f(n: int, ratio: float = 1.0) -> tuple[int, float]:
        return n, ratio

    assert f("5", ratio="0.5") == (5, 0.5)  # type: ignore[arg-type]


def test_bad_parameter_fails_before_the_body_and_names_the_parameter() -> None:
    ran = []

    @flow
    def f(count: int, label: str = "x") -> None:
        ran.append(True)

    state = f("not-a-number", return_state=True)  # type: ignore[arg-type]
    assert state.is_failed()
    assert not ran
    with pytest.raises(ParameterTypeError, match="'count'"):
        state.result()


def test_validate_parameters_false_passes_values_through() -> None:
    @flow(validate_parameters=False)
    def f(n: int) -> object:
        return n

    assert f("5") == "5"  # type: ignore[arg-type]


def test_flow_fails_when_an_awaited_task_failed() -> None:
    @task
    def bad() -> None:
        raise RuntimeError("task broke")

    @flow
    def f() -> None:
        bad.submit().result()

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="task broke"):
        state.result()


def test_flow_completes_when_it_handles_a_task_failure() -> None:
    @task
    def bad() -> None:
        raise RuntimeError("task broke")

    @flow
    def f() -> str:
        try:
            bad()
        except RuntimeError:
            return "handled"
        return "unreachable"

    assert f() == "handled"


def test_unawaited_failed_future_does_not_fail_the_flow() -> None:
    @task
    def bad() -> None:
        raise RuntimeError("ignored")

    @flow
    def f() -> str:
        bad.submit()
        return "done"

    assert f(return_state=True).is_completed()


def test_returned_failed_future_fails_the_flow() -> None:
    @task
    def bad() -> None:
        raise RuntimeError("returned")

    @task
    def good() -> int:
        return 1

    @flow
    def f():  # type: ignore[no-untyped-def]
        return [good.submit(), bad.submit()]

    state = f(return_state=True)
    assert state.is_failed()
    assert state.message == "1/2 states failed."


def test_returned_futures_are_resolved_to_their_final_states() -> None:
    # As in Prefect 3: the caller gets the futures' final states, the run completes.
    @task
    def sq(x: int) -> int:
        return x * x

    @flow
    def f():  # type: ignore[no-untyped-def]
        return [sq.submit(i) for i in range(4)]

    states = f()
    assert all(isinstance(s, State) and s.is_completed() for s in states)
    assert [s.result() for s in states] == [0, 1, 4, 9]
    assert f(return_state=True).message == "All states completed."


def test_body_may_return_a_state_to_set_its_final_state() -> None:
    @flow
    def failing() -> State[None]:
        return Failed(message="chosen failure")

    @flow
    def completing() -> State[int]:
        return Completed(message="fine", data=7)

    failed = failing(return_state=True)
    assert failed.is_failed() and failed.message == "chosen failure"
    assert completing() == 7


def test_with_options_returns_a_changed_copy() -> None:
    @flow(name="a")
    def f() -> str | None:
        return flow_run.flow_name

    g = f.with_options(name="b", retries=2)
    assert (f.name, g.name, g.retries, f.retries) == ("a", "b", 2, 0)
    assert g() == "b"
    with pytest.raises(TypeError, match="nope"):
        f.with_options(nope=1)


def test_flow_retries_rerun_the_body(sink) -> None:  # type: ignore[no-untyped-def]
    attempts = []

    @flow(retries=2, retry_delay_seconds=0)
    def f() -> int:
        attempts.append(flow_run.run_count)
        if len(attempts) < 3:
            raise ValueError("again")
        return len(attempts)

    assert f() == 3
    assert attempts == [1, 2, 3]
    (names,) = sink.runs("flow-run").values()
    assert names == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed",
    ]  # fmt: skip


def test_log_prints_sends_print_to_the_run_logger(sink, capsys) -> None:  # type: ignore[no-untyped-def]
    @flow(log_prints=True)
    def f() -> None:
        print("hello from the flow")

    @flow
    def quiet() -> None:
        print("plain print")

    f()
    quiet()
    messages = [r["message"] for r in sink.logs]
    assert "hello from the flow" in messages
    assert "plain print" not in messages
    assert "plain print" in capsys.readouterr().out


def test_task_inherits_log_prints_from_its_flow(sink) -> None:  # type: ignore[no-untyped-def]
    @task
    def t() -> None:
        print("from task")

    @flow(log_prints=True)
    def f() -> None:
        t()

    f()
    (record,) = [r for r in sink.logs if r["message"] == "from task"]
    assert record["task_run_id"] is not None


def test_flow_with_varargs_and_keyword_only_parameters() -> None:
    @flow
    def f(a: int, *rest: int, scale: int = 1, **extra: int) -> int:
        return (a + sum(rest) + sum(extra.values())) * scale

    assert f(1, 2, 3, scale=2, z=4) == 20


def test_flow_returning_a_named_tuple_keeps_it() -> None:
    from typing import NamedTuple

    class Pair(NamedTuple):
        a: int
        b: int

    @flow
    def f() -> Pair:
        return Pair(1, 2)

    assert f() == Pair(1, 2) and isinstance(f(), Pair)


def test_task_arguments_without_futures_are_passed_as_is() -> None:
    received = []

    @task
    def keep(xs: list[list[int]]) -> None:
        received.append(xs)

    data = [[1], [2]]
    keep(data)
    assert received[0] is data


def test_run_flow_of_an_async_flow_with_timeout_cancels_the_coroutine() -> None:
    import time

    from flowbus._engine import run_flow
    from flowbus.exceptions import FlowRunTimeoutError

    finished = []

    @flow(timeout_seconds=0.1)
    async def slow() -> None:
        await asyncio.sleep(2)
        finished.append(True)

    start = time.monotonic()
    state = run_flow(slow)
    assert time.monotonic() - start < 1.5
    with pytest.raises(FlowRunTimeoutError):
        state.result()
    assert finished == []


def test_a_flow_run_name_callable_that_raises_fails_the_run() -> None:
    def broken_name() -> str:
        raise RuntimeError("no name")

    @flow(flow_run_name=broken_name)
    def f() -> None:
        raise AssertionError("the body must not run")

    state = f(return_state=True)
    assert state.is_failed() and "no name" in (state.message or "")


def test_flow_returning_a_task_state_ends_in_their_aggregate() -> None:
    # As in Prefect 3: another run's state is aggregated, and is the flow's result.
    @task
    def t() -> int:
        return 9

    @flow
    def f():  # type: ignore[no-untyped-def]
        return t(return_state=True)

    state = f(return_state=True)
    assert state.is_completed() and state.message == "All states completed."
    inner = state.result()
    assert isinstance(inner, State) and inner.result() == 9


def test_flows_and_tasks_work_as_methods() -> None:
    class Pipeline:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        @task
        def scale(self, x: int) -> int:
            return x * self.factor

        @flow
        def run(self, x: int) -> int:
            return self.scale(x) + self.scale.submit(x).result()

    assert Pipeline(3).run(2) == 12
    assert Pipeline(5).run(1) == 10
