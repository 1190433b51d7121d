"""The state constructors of `flowbus.states` (Prefect's names and arguments)."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Protocol

from events.states import StateType
from flowbus.states import State, StateDetails

_UTC = _dt.UTC

_StateClass = type["State[Any]"]


class StateConstructor(Protocol):
    def __call__(
        self,
        message: str | None = None,
        data: Any = None,
        name: str | None = None,
        timestamp: _dt.datetime | None = None,
        state_details: StateDetails | dict[str, Any] | None = None,
        cls: _StateClass = ...,
    ) -> State[Any]: ...


def _make(type: StateType, default_name: str | None = None) -> StateConstructor:
    def constructor(
        message: str | None = None,
        data: Any = None,
        name: str | None = None,
        timestamp: _dt.datetime | None = None,
        state_details: StateDetails | dict[str, Any] | None = None,
        cls: _StateClass = State,
    ) -> State[Any]:
        return cls(type, name or default_name, message, data, timestamp, state_details)

    constructor.__name__ = default_name or type.value.capitalize()
    constructor.__doc__ = f"A {constructor.__name__!r} state (type {type.value})."
    return constructor


def Scheduled(
    message: str | None = None,
    data: Any = None,
    name: str | None = None,
    timestamp: _dt.datetime | None = None,
    state_details: StateDetails | dict[str, Any] | None = None,
    cls: _StateClass = State,
    scheduled_time: _dt.datetime | None = None,
) -> State[Any]:
    """A 'Scheduled' state (type SCHEDULED), due at `scheduled_time` (default: now)."""
    details = StateDetails.coerce(state_details).model_copy()
    if scheduled_time is not None:
        if details.scheduled_time is not None:
            raise ValueError("An extra scheduled_time was provided in state_details")
        details.scheduled_time = scheduled_time
    return cls(StateType.SCHEDULED, name, message, data, timestamp, details)


def _scheduled_named(default_name: str) -> Any:
    def constructor(
        message: str | None = None,
        data: Any = None,
        name: str | None = None,
        timestamp: _dt.datetime | None = None,
        state_details: StateDetails | dict[str, Any] | None = None,
        cls: _StateClass = State,
        scheduled_time: _dt.datetime | None = None,
    ) -> State[Any]:
        return Scheduled(message, data, name or default_name, timestamp, state_details, cls, scheduled_time)

    constructor.__name__ = default_name
    constructor.__doc__ = f"A {default_name!r} state (type SCHEDULED), due at `scheduled_time`."
    return constructor


def Paused(
    message: str | None = None,
    data: Any = None,
    name: str | None = None,
    timestamp: _dt.datetime | None = None,
    state_details: StateDetails | dict[str, Any] | None = None,
    cls: _StateClass = State,
    timeout_seconds: float | None = None,
    pause_expiration_time: _dt.datetime | None = None,
    reschedule: bool = False,
    pause_key: str | None = None,
) -> State[Any]:
    """A 'Paused' state (type PAUSED); the pause ends after `timeout_seconds` or at
    `pause_expiration_time` (not both)."""
    details = StateDetails.coerce(state_details).model_copy()
    if details.pause_timeout is not None:
        raise ValueError("An extra pause timeout was provided in state_details")
    if pause_expiration_time is not None and timeout_seconds is not None:
        raise ValueError("Cannot supply both a pause_expiration_time and timeout_seconds")
    if pause_expiration_time is not None:
        details.pause_timeout = pause_expiration_time
    elif timeout_seconds is not None:
        details.pause_timeout = _dt.datetime.now(_UTC) + _dt.timedelta(seconds=timeout_seconds)
    details.pause_reschedule = reschedule
    details.pause_key = pause_key
    return cls(StateType.PAUSED, name, message, data, timestamp, details)


def Suspended(
    message: str | None = None,
    data: Any = None,
    name: str | None = None,
    timestamp: _dt.datetime | None = None,
    state_details: StateDetails | dict[str, Any] | None = None,
    cls: _StateClass = State,
    timeout_seconds: float | None = None,
    pause_expiration_time: _dt.datetime | None = None,
    pause_key: str | None = None,
) -> State[Any]:
    """A 'Suspended' state: a pause that reschedules the run (type PAUSED)."""
    return Paused(
        message, data, name or "Suspended", timestamp, state_details, cls,
        timeout_seconds, pause_expiration_time, True, pause_key,
    )  # fmt: skip


Late = _scheduled_named("Late")
AwaitingRetry = _scheduled_named("AwaitingRetry")
AwaitingConcurrencySlot = _scheduled_named("AwaitingConcurrencySlot")
Pending = _make(StateType.PENDING)
Submitting = _make(StateType.PENDING, "Submitting")
InfrastructurePending = _make(StateType.PENDING, "InfrastructurePending")
Running = _make(StateType.RUNNING)
Retrying = _make(StateType.RUNNING, "Retrying")
Completed = _make(StateType.COMPLETED)
Cached = _make(StateType.COMPLETED, "Cached")
Failed = _make(StateType.FAILED)
Crashed = _make(StateType.CRASHED)
Cancelled = _make(StateType.CANCELLED)
Cancelling = _make(StateType.CANCELLING)

