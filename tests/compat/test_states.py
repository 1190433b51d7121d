"""States: direct construction, comparison, copying, serialisation and the helper
functions of `prefect.states`, as in Prefect 3."""

from __future__ import annotations

import copy
import datetime as dt
import pickle
from typing import Any

import pytest

from flowbus.exceptions import CancelledRun, CrashedRun, FailedRun
from flowbus.states import (
    AwaitingRetry,
    Completed,
    Failed,
    Late,
    Paused,
    Scheduled,
    State,
    StateDetails,
    StateGroup,
    StateType,
    Suspended,
    aget_state_exception,
    exception_to_crashed_state,
    exception_to_failed_state,
    get_state_exception,
    is_state_iterable,
    raise_state_exception,
)


def test_direct_construction_takes_a_type_and_names_from_it() -> None:
    state = State(type=StateType.COMPLETED, message="done", data=3)
    assert (state.name, state.message, state.result()) == ("Completed", "done", 3)
    assert State(type="FAILED").is_failed()
    assert State(type=StateType.CANCELLING).name == "Cancelling"
    with pytest.raises(ValueError, match="NOPE"):
        State(type="NOPE")


def test_scheduled_states_carry_their_scheduled_time() -> None:
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert Scheduled(scheduled_time=when).state_details.scheduled_time == when
    assert AwaitingRetry(scheduled_time=when).name == "AwaitingRetry"
    assert Late().state_details.scheduled_time is not None
    with pytest.raises(ValueError, match="extra scheduled_time"):
        Scheduled(scheduled_time=when, state_details={"scheduled_time": when})


def test_paused_states_carry_their_timeout() -> None:
    paused = Paused(timeout_seconds=60, pause_key="k")
    assert paused.state_details.pause_timeout is not None and paused.state_details.pause_key == "k"
    assert Suspended().state_details.pause_reschedule is True
    with pytest.raises(ValueError, match="both"):
        Paused(timeout_seconds=1, pause_expiration_time=dt.datetime.now(dt.UTC))


def test_states_compare_by_their_fields() -> None:
    when = dt.datetime.now(dt.UTC)
    assert Completed(data=1, timestamp=when) == Completed(data=1, timestamp=when)
    assert Completed(data=1, timestamp=when) != Completed(data=2, timestamp=when)
    assert Completed(data=1) != Completed(data=1, timestamp=when - dt.timedelta(seconds=1))
    assert Completed(timestamp=when) != Failed(timestamp=when)
    assert len({Completed(timestamp=when), Completed(timestamp=when)}) == 1


def test_model_copy_is_a_new_state_with_a_fresh_timestamp() -> None:
    state = Failed(message="x", timestamp=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    copied = state.model_copy()
    assert copied.timestamp > state.timestamp and copied.message == "x" and copied.type is state.type
    assert state.model_copy(update={"message": "y"}).message == "y"
    plain = copy.copy(state)
    assert plain == state and plain is not state


def test_states_serialise_and_come_back() -> None:
    state = Completed(message="m", data={"a": 1})
    dumped = state.model_dump(mode="json")
    assert dumped["type"] == "COMPLETED" and dumped["data"] == {"a": 1} and dumped["name"] == "Completed"
    again = State.model_validate_json(state.model_dump_json())
    assert again == state
    assert pickle.loads(pickle.dumps(state)) == state
    with pytest.raises(ValueError, match="type"):
        State.model_validate({"name": "x"})


def test_state_details_validate_their_fields() -> None:
    assert StateDetails(cache_key="k").cache_key == "k"
    with pytest.raises(TypeError, match="nope"):
        State(StateType.COMPLETED, state_details={"nope": 1})


def test_state_group_and_iterables() -> None:
    group = StateGroup([Completed(), Failed(), State(StateType.RUNNING)])
    assert (group.fail_count, group.not_final_count, group.all_completed()) == (1, 1, False)
    assert "total=3" in group.counts_message()
    assert is_state_iterable([Completed()]) and is_state_iterable((Completed(),))
    assert not is_state_iterable([]) and not is_state_iterable({"a": Completed()})
    assert not is_state_iterable([Completed(), 1])


def test_state_exceptions() -> None:
    error = ValueError("v")
    assert get_state_exception(Failed(data=error)) is error
    assert isinstance(get_state_exception(Failed(message="m")), FailedRun)
    assert isinstance(get_state_exception(State(StateType.CRASHED)), CrashedRun)
    assert isinstance(get_state_exception(State(StateType.CANCELLED)), CancelledRun)
    assert get_state_exception(Failed(data=[Completed(), Failed(data=error)])) is error
    with pytest.raises(ValueError, match="Expected failed"):
        get_state_exception(Completed())
    with pytest.raises(ValueError, match="v"):
        raise_state_exception(Failed(data=error))
    raise_state_exception(Completed())  # nothing to raise


async def test_state_helpers_are_awaitable_in_async_code() -> None:
    error = ValueError("v")
    assert await get_state_exception(Failed(data=error)) is error
    assert await aget_state_exception(Failed(data=error)) is error
    state = await exception_to_failed_state(error, message="while loading")
    assert state.is_failed() and state.message == "while loading ValueError: v"


def test_exception_to_states() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        failed: State[Any] = exception_to_failed_state()
    assert failed.is_failed() and isinstance(failed.data, KeyError)
    assert failed.state_details.retriable is False
    crashed = exception_to_crashed_state(KeyboardInterrupt())
    assert crashed.is_crashed() and crashed.message == "Execution was aborted by an interrupt signal."
    with pytest.raises(ValueError, match="no active exception"):
        exception_to_failed_state()
