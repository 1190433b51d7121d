"""Functions over states, as Prefect's `prefect.states` module has them.

`return_value_to_state` is the rule that turns what a flow or task body returned into
the run's final state; the engine calls it for every run.
"""

from __future__ import annotations

import logging
import sys
import traceback
import uuid
from collections import Counter
from collections.abc import Iterable
from types import GeneratorType, TracebackType
from typing import TYPE_CHECKING, Any, TypeGuard

from flowbus._dual import dual
from flowbus.exceptions import CancelledRun, CrashedRun, FailedRun, TerminationSignal

if TYPE_CHECKING:
    from flowbus.states import State

from events.states import StateType


def is_state_iterable(obj: Any) -> TypeGuard[Iterable[State[Any]]]:
    """Whether `obj` is a non-empty list, set or tuple made only of states.

    Dicts and other containers are never state iterables, even when they hold states.
    """
    if not isinstance(obj, list | set | tuple) or not obj:  # the common case, kept cheap
        return False
    from flowbus.states import State
    from flowbus.utilities.annotations import BaseAnnotation

    return not isinstance(obj, BaseAnnotation) and all(isinstance(o, State) for o in obj)


class StateGroup:
    """Counts over a group of states, to decide one state for all of them."""

    def __init__(self, states: list[State[Any]]) -> None:
        self.states = states
        self.type_counts: Counter[StateType] = Counter(s.type for s in states)
        self.total_count = len(states)
        self.cancelled_count = self.type_counts[StateType.CANCELLED]
        self.final_count = sum(s.is_final() for s in states)
        self.not_final_count = self.total_count - self.final_count
        self.paused_count = self.type_counts[StateType.PAUSED]

    @property
    def fail_count(self) -> int:
        return self.type_counts[StateType.FAILED] + self.type_counts[StateType.CRASHED]

    def all_completed(self) -> bool:
        return self.type_counts[StateType.COMPLETED] == self.total_count

    def any_cancelled(self) -> bool:
        return self.cancelled_count > 0

    def any_failed(self) -> bool:
        return self.fail_count > 0

    def any_paused(self) -> bool:
        return self.paused_count > 0

    def all_final(self) -> bool:
        return self.final_count == self.total_count

    def counts_message(self) -> str:
        parts = [f"total={self.total_count}"]
        if self.not_final_count:
            parts.append(f"not_final={self.not_final_count}")
        parts += [f"{t.value!r}={n}" for t, n in self.type_counts.items() if n]
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"StateGroup<{self.counts_message()}>"


def _is_run_state(state: State[Any]) -> bool:
    return state._run_ids_now() != (None, None)


def aggregate_state_type(retval: Any) -> tuple[StateType, str] | None:
    """For another run's state, or a non-empty list/set/tuple of states only: the
    aggregate type and its message (COMPLETED when all are, else CANCELLED if any is,
    else PAUSED if any is, else FAILED). None for any other value."""
    from flowbus.states import State

    if not (isinstance(retval, State) or is_state_iterable(retval)):
        return None
    group = StateGroup(list(retval) if not isinstance(retval, State) else [retval])
    if group.all_completed():
        return StateType.COMPLETED, "All states completed."
    if group.any_cancelled():
        return StateType.CANCELLED, f"{group.cancelled_count}/{group.total_count} states cancelled."
    if group.any_paused():
        return StateType.PAUSED, f"{group.paused_count}/{group.total_count} states paused."
    if group.any_failed():
        return StateType.FAILED, f"{group.fail_count}/{group.total_count} states failed."
    if not group.all_final():
        return StateType.FAILED, f"{group.not_final_count}/{group.total_count} states are not final."
    return StateType.FAILED, "Given states: " + group.counts_message()


def state_for_return_value(retval: Any) -> State[Any]:
    """The state a run ends in, given what its body returned (futures already resolved);
    the engine's rule, with the value kept in the state (no result record).

    - A state built by the body itself (it has no run ids) is the run's state, as is.
    - A state of another run, or a non-empty list/set/tuple of states only, gives one
      aggregate state: COMPLETED when all are, else CANCELLED if any is, else PAUSED
      if any is, else FAILED; its data is the returned value.
    - A generator is consumed into a list.
    - Anything else (including a dict or a tuple holding states next to plain
      values) is a COMPLETED state holding the value as is.
    """
    from flowbus.states import Completed, State

    if isinstance(retval, State) and not _is_run_state(retval):
        return retval
    aggregate = aggregate_state_type(retval)
    if aggregate is not None:
        return State(aggregate[0], message=aggregate[1], data=retval)
    if isinstance(retval, GeneratorType):
        retval = list(retval)
    return Completed(data=retval)


def format_exception(exc: BaseException, tb: TracebackType | None = None) -> str:
    """``Type: message``, or the full traceback when `tb` is given."""
    if tb is not None:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    return f"{type(exc).__name__}: {exc}"


async def aget_state_exception(state: State[Any]) -> BaseException:
    """`get_state_exception` for async code."""
    return _state_exception(state)


@dual(aget_state_exception)
def get_state_exception(state: State[Any]) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (see
    `_state_exception`); awaitable in async code."""
    return _state_exception(state)


def _state_exception(state: State[Any]) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (ValueError for
    any other state), from its data (a result record's value, or its metadata's):
    an exception as is; a string, or nothing, as a `FailedRun` / `CrashedRun` /
    `CancelledRun` with that message (else the state's); for a state, that state's
    exception; for states, the first failed one's (ValueError when none failed);
    TypeError for anything else."""
    if state.is_failed():
        wrapper: type[BaseException] = FailedRun
        default = "Run failed."
    elif state.is_crashed():
        wrapper, default = CrashedRun, "Run crashed."
    elif state.is_cancelled():
        wrapper, default = CancelledRun, "Run cancelled."
    else:
        raise ValueError(f"Expected failed or crashed state got {state!r}.")
    from flowbus.states import State, _record_value

    data = _record_value(state.data)
    if data is None:
        return wrapper(state.message or default)
    if isinstance(data, BaseException):
        return data
    if isinstance(data, str):
        return wrapper(data)
    if isinstance(data, State):
        return _state_exception(data)
    if is_state_iterable(data):
        for inner in data:
            if inner.is_failed() or inner.is_crashed() or inner.is_cancelled():
                return _state_exception(inner)
        raise ValueError("Failed state result was an iterable of states but none were failed.")
    raise TypeError(
        f"Unexpected result for failed state: {data!r} —— {type(data).__name__} cannot be resolved into an exception"
    )


async def araise_state_exception(state: State[Any]) -> None:
    """`raise_state_exception` for async code."""
    _raise_state_exception(state)


@dual(araise_state_exception)
def raise_state_exception(state: State[Any]) -> None:
    """Raise the exception of a failed, crashed or cancelled state; other states: nothing."""
    _raise_state_exception(state)


def _raise_state_exception(state: State[Any]) -> None:
    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        raise _state_exception(state)


async def _aexception_to_failed_state(
    exc: BaseException | None = None, result_store: Any = None, write_result: bool = False, **kwargs: Any
) -> State[Any]:
    exc, data = _exception_record(exc, result_store)
    if data is not None and write_result:
        await _apersist_or_warn(result_store, data)
    return _failed_state(exc, data=data, **kwargs)


@dual(_aexception_to_failed_state)
def exception_to_failed_state(
    exc: BaseException | None = None, result_store: Any = None, write_result: bool = False, **kwargs: Any
) -> State[Any]:
    """A Failed state for `exc` (default: the exception being handled), its message
    ending with ``Type: message`` after any ``message=`` given; awaitable in async code.

    With a ``result_store`` the state's data is a result record of the exception
    (`ResultStore.create_result_record`), written when ``write_result`` is true (a
    failed write is logged, not raised); without one, the exception itself.
    """
    return failed_state_with_store(exc, result_store, write_result, **kwargs)


def failed_state_with_store(
    exc: BaseException | None, result_store: Any, write_result: bool, **kwargs: Any
) -> State[Any]:
    """`exception_to_failed_state` as a plain call."""
    exc, data = _exception_record(exc, result_store)
    if data is not None and write_result:
        _persist_or_warn(result_store, data)
    return _failed_state(exc, data=data, **kwargs)


def _exception_record(exc: BaseException | None, result_store: Any) -> tuple[BaseException | None, Any]:
    """`exc` (default: the exception being handled) and, with a ``result_store``, a
    result record of it (None without one)."""
    if exc is None:
        exc = sys.exc_info()[1]
    if result_store is None or exc is None:
        return exc, None
    return exc, result_store.create_result_record(exc, key=uuid.uuid4().hex)


def _persist_or_warn(result_store: Any, record: Any) -> None:
    try:
        result_store.persist_result_record(record)
    except Exception as exc:
        _logger().warning("Failed to write result: %s Execution will continue, but the result has not been written", exc)


async def _apersist_or_warn(result_store: Any, record: Any) -> None:
    try:
        await result_store.apersist_result_record(record)
    except Exception as exc:
        _logger().warning("Failed to write result: %s Execution will continue, but the result has not been written", exc)


def _logger() -> logging.Logger:
    from flowbus.logging import get_run_logger

    try:
        return get_run_logger()  # type: ignore[return-value]
    except Exception:
        return logging.getLogger("flowbus.states")


def _failed_state(exc: BaseException | None = None, message: str = "", data: Any = None, **kwargs: Any) -> State[Any]:
    """A Failed state for `exc` (default: the exception being handled), its message
    ending with ``Type: message``; its data `data`, or else the exception."""
    from flowbus.states import Failed

    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            raise ValueError("Exception was not passed and no active exception could be found.")
    if message and not message.endswith(" "):
        message += " "
    state = Failed(message=message + format_exception(exc), data=exc if data is None else data, **kwargs)
    state.state_details.retriable = False
    return state


async def _aexception_to_crashed_state(exc: BaseException, result_store: Any = None) -> State[Any]:
    return _crashed_state(exc, result_store)


@dual(_aexception_to_crashed_state)
def exception_to_crashed_state(exc: BaseException, result_store: Any = None) -> State[Any]:
    """A Crashed state for `exc` (see `_crashed_state`); awaitable in async code."""
    return _crashed_state(exc, result_store)


def _crashed_state(exc: BaseException, result_store: Any = None) -> State[Any]:
    """A Crashed state for an exception raised outside user code (a signal, an exit).

    With a ``result_store``, its data is a result record of the exception (not
    written); without one, the exception itself.
    """
    import asyncio

    from flowbus.states import Crashed

    if isinstance(exc, asyncio.CancelledError):
        message = "Execution was cancelled by the runtime environment."
    elif isinstance(exc, KeyboardInterrupt):
        message = "Execution was aborted by an interrupt signal."
    elif isinstance(exc, TerminationSignal):
        message = "Execution was aborted by a termination signal."
    elif isinstance(exc, SystemExit):
        message = "Execution was aborted by Python system exit call."
    else:
        message = f"Execution was interrupted by an unexpected exception: {format_exception(exc)}"
    data = result_store.create_result_record(exc, key=uuid.uuid4().hex) if result_store is not None else exc
    return Crashed(message=message, data=data)


__all__ = [
    "CancelledRun",
    "CrashedRun",
    "FailedRun",
    "StateGroup",
    "aget_state_exception",
    "araise_state_exception",
    "exception_to_crashed_state",
    "exception_to_failed_state",
    "format_exception",
    "get_state_exception",
    "is_state_iterable",
    "raise_state_exception",
    "state_for_return_value",
]
