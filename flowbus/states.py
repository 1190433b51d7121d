"""Run states: what a flow or task run is doing, and what it ended with.

A `State` has a `type` (the machine-readable kind) and a `name` (what users see; several
names share a type, e.g. ``Cached`` and ``Completed`` are both COMPLETED).

Example::

    from flowbus.states import Completed, Failed

    @task
    def check(x: int):
        return Completed(message="fine") if x > 0 else Failed(message="negative")
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Generic, Protocol, TypeVar

# One set of state types for the SDK and the records the services keep.
from events.states import FINAL_TYPES as _FINAL
from events.states import StateType as StateType
from flowbus.exceptions import CancelledRun, CrashedRun, FailedRun, MissingResult, UnfinishedRun

R = TypeVar("R")

_UTC = _dt.UTC



class ResultRef:
    """A result kept in a result store rather than in memory; loaded on demand."""

    __slots__ = ("key", "serializer", "store")

    def __init__(self, store: Any, key: str, serializer: Any) -> None:
        self.store = store
        self.key = key
        self.serializer = serializer

    def load(self) -> Any:
        data = self.store.read(self.key)
        if data is None:
            raise MissingResult(
                f"Result {self.key!r} is no longer in its result store; "
                "it may have been deleted or may have expired."
            )
        return self.serializer.loads(data)

    def __repr__(self) -> str:
        return f"ResultRef(key={self.key!r})"


class State(Generic[R]):
    """A run state. `data` holds the result, or the exception for a failed state."""

    __slots__ = ("data", "message", "name", "timestamp", "type")

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        data: Any = None,
        timestamp: _dt.datetime | None = None,
    ) -> None:
        self.type = type
        self.name = name if name is not None else type.value.capitalize()
        self.message = message
        self.data = data
        self.timestamp = timestamp if timestamp is not None else _dt.datetime.now(_UTC)

    def result(self, raise_on_failure: bool = True) -> R:
        """The run's return value; for a failed, crashed or cancelled state, raise its error.

        With ``raise_on_failure=False`` the error is returned instead of raised.
        """
        if self.type in _FINAL and self.type is not StateType.COMPLETED:
            exc = self._exception()
            if raise_on_failure:
                raise exc
            return exc  # type: ignore[return-value]
        if self.type is not StateType.COMPLETED:
            raise UnfinishedRun(
                f"The run is in state {self.name!r}; its result is only available once "
                "it has completed. Wait for it first (e.g. `future.wait()`)."
            )
        data = self.data
        if isinstance(data, ResultRef):
            return data.load()  # type: ignore[no-any-return]
        return data  # type: ignore[no-any-return]

    def _exception(self) -> BaseException:
        data = self.data
        if isinstance(data, BaseException):
            return data
        if isinstance(data, State) and data.type in _FINAL:
            return data._exception()
        message = self.message or f"Run ended in state {self.name!r}."
        if self.type is StateType.CRASHED:
            return CrashedRun(message)
        if self.type is StateType.CANCELLED:
            return CancelledRun(message)
        return FailedRun(message)

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in _FINAL

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form used in events: type, name, message, timestamp."""
        return {
            "type": self.type.value,
            "name": self.name,
            "message": self.message,
            "timestamp": self.timestamp.isoformat(),
        }

    def __repr__(self) -> str:
        parts = []
        if self.message:
            parts.append(repr(self.message))
        if self.name != self.type.value.capitalize():
            parts.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(parts)})"


class StateConstructor(Protocol):
    def __call__(
        self,
        message: str | None = None,
        data: Any = None,
        name: str | None = None,
        timestamp: _dt.datetime | None = None,
    ) -> State[Any]: ...


def _make(type: StateType, default_name: str | None = None) -> StateConstructor:
    def constructor(
        message: str | None = None,
        data: Any = None,
        name: str | None = None,
        timestamp: _dt.datetime | None = None,
    ) -> State[Any]:
        return State(type, name or default_name, message, data, timestamp)

    constructor.__name__ = default_name or type.value.capitalize()
    constructor.__doc__ = f"A {constructor.__name__!r} state (type {type.value})."
    return constructor


Scheduled = _make(StateType.SCHEDULED)
Late = _make(StateType.SCHEDULED, "Late")
AwaitingRetry = _make(StateType.SCHEDULED, "AwaitingRetry")
AwaitingConcurrencySlot = _make(StateType.SCHEDULED, "AwaitingConcurrencySlot")
Pending = _make(StateType.PENDING)
Running = _make(StateType.RUNNING)
Retrying = _make(StateType.RUNNING, "Retrying")
Completed = _make(StateType.COMPLETED)
Cached = _make(StateType.COMPLETED, "Cached")
Failed = _make(StateType.FAILED)
Crashed = _make(StateType.CRASHED)
Cancelled = _make(StateType.CANCELLED)
Cancelling = _make(StateType.CANCELLING)
Paused = _make(StateType.PAUSED)
Suspended = _make(StateType.PAUSED, "Suspended")

__all__ = [
    "AwaitingConcurrencySlot",
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "Paused",
    "Pending",
    "ResultRef",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateType",
    "Suspended",
]
