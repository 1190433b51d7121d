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
import sys
from typing import Any, Generic, TypeVar

# One set of state types for the SDK and the records the services keep.
from events.states import FINAL_TYPES as _FINAL
from events.states import StateType as StateType
from flowbus._state_details import ResultRef, StateDetails, _parse_time
from flowbus.exceptions import CancelledRun, CrashedRun, FailedRun, UnfinishedRun

R = TypeVar("R")

_UTC = _dt.UTC



def _coerce_type(value: StateType | str) -> StateType:
    if isinstance(value, StateType):
        return value
    try:
        return StateType(str(value).upper())
    except ValueError:
        raise ValueError(
            f"State type {value!r} is not one of {[t.value for t in StateType]}"
        ) from None


class State(Generic[R]):
    """A run state. `data` holds the result, or the exception for a failed state.

    Build one directly (``State(type=StateType.COMPLETED, message="done")``) or with the
    constructors below (``Completed(message="done")``). States compare by their
    fields (type, name, timestamp, message, details, data), as Prefect's do.
    """

    __slots__ = ("_details", "_run_ids", "data", "message", "name", "timestamp", "type")

    def __init__(
        self,
        type: StateType | str,
        name: str | None = None,
        message: str | None = None,
        data: Any = None,
        timestamp: _dt.datetime | None = None,
        state_details: StateDetails | dict[str, Any] | None = None,
    ) -> None:
        self.type = type if type.__class__ is StateType else _coerce_type(type)
        self.name = name if name is not None else _DEFAULT_NAMES[self.type]
        self.message = message
        self.data = data
        self.timestamp = timestamp if timestamp is not None else _dt.datetime.now(_UTC)
        self._details: StateDetails | None = None
        # (flow_run_id, task_run_id) set by the engine; kept apart from `_details` so
        # that a run's states cost no StateDetails unless someone reads them.
        self._run_ids: tuple[str | None, str | None] | None = None
        if state_details is not None:
            self._details = StateDetails.coerce(state_details)
        if self.type is StateType.SCHEDULED and self.state_details.scheduled_time is None:
            self.state_details.scheduled_time = self.timestamp

    @property
    def state_details(self) -> StateDetails:
        details = self._details
        if details is None:
            details = self._details = StateDetails()
            if self._run_ids is not None:
                details.flow_run_id, details.task_run_id = self._run_ids
                self._run_ids = None
        return details

    @state_details.setter
    def state_details(self, value: StateDetails | dict[str, Any]) -> None:
        self._details = StateDetails.coerce(value)

    def _bind_run(self, flow_run_id: str | None, task_run_id: str | None) -> None:
        """Mark this state as the state of a run (what the engine does on every transition)."""
        details = self._details
        if details is None:
            self._run_ids = (flow_run_id, task_run_id)
        else:
            details.flow_run_id, details.task_run_id = flow_run_id, task_run_id

    def _run_ids_now(self) -> tuple[str | None, str | None]:
        details = self._details
        if details is not None:
            return details.flow_run_id, details.task_run_id
        return self._run_ids or (None, None)

    def result(
        self, raise_on_failure: bool = True, retry_result_failure: bool = True, _sync: bool | None = None
    ) -> R:
        """The run's return value; for a failed, crashed or cancelled state, raise its error.

        With ``raise_on_failure=False`` such a state gives its data (the exception, or
        whatever it holds), or its error when it holds nothing. As
        Prefect's, this is awaitable in async code (an async flow or task run, or a
        thread with a running event loop: it returns `aresult`'s coroutine) and a plain
        call elsewhere; ``_sync=True`` forces the plain call. A value kept as a result
        record's metadata is read from its store, retried ``retry_result_failure``
        times (`RESULT_READ_MAXIMUM_ATTEMPTS`) while it is not there yet.
        """
        if _sync is None:
            from flowbus._dual import is_in_async_context

            _sync = not is_in_async_context()
        if not _sync:
            return self.aresult(raise_on_failure, retry_result_failure)  # type: ignore[return-value]
        if self.type in _FINAL and self.type is not StateType.COMPLETED:
            if raise_on_failure:
                raise self._exception()
            # As Prefect's: the state's data (a record's value), its error when it has none.
            value = _record_value(self.data, retry_result_failure)
            return self._exception() if value is None else value  # type: ignore[return-value]
        if self.type is not StateType.COMPLETED:
            raise UnfinishedRun(
                f"The run is in state {self.name!r}; its result is only available once "
                "it has completed. Wait for it first (e.g. `future.wait()`)."
            )
        data = self.data
        if isinstance(data, ResultRef):
            return data.load()  # type: ignore[no-any-return]
        return _record_value(data, retry_result_failure)  # type: ignore[no-any-return]

    async def aresult(self, raise_on_failure: bool = True, retry_result_failure: bool = True) -> R:
        """`result` for async code (a stored result is read in a worker thread)."""
        data = self.data
        if isinstance(data, ResultRef) or _is_record_metadata(data):
            import asyncio

            return await asyncio.to_thread(self.result, raise_on_failure, retry_result_failure, True)
        return self.result(raise_on_failure, retry_result_failure, True)

    def _exception(self) -> BaseException:
        data = _record_value(self.data)
        if isinstance(data, BaseException):
            return data
        if isinstance(data, State) and data.type in _FINAL:
            return data._exception()
        if isinstance(data, list | tuple | set) and data and all(isinstance(s, State) for s in data):
            for inner in data:
                if isinstance(inner, State) and inner.type in _FINAL and inner.type is not StateType.COMPLETED:
                    return inner._exception()
        if isinstance(data, str) and data:
            message = data
        else:
            message = self.message or _DEFAULT_MESSAGES.get(self.type, f"Run ended in state {self.name!r}.")
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

    # -- Prefect's pydantic-style API: dump, validate, copy, compare --------------------

    def model_dump(self, mode: str = "python", exclude: set[str] | None = None) -> dict[str, Any]:
        """The state as a dict (``mode="json"``: JSON-safe; data that JSON cannot hold
        is given as its ``repr``)."""
        out: dict[str, Any] = {
            "type": self.type,
            "name": self.name,
            "timestamp": self.timestamp,
            "message": self.message,
            "state_details": self.state_details.model_dump(mode),
            "data": self.data,
        }
        if mode == "json":
            from pydantic_core import to_jsonable_python

            out["type"] = self.type.value
            out["timestamp"] = self.timestamp.isoformat()
            out["data"] = to_jsonable_python(self.data, fallback=repr)
        for key in exclude or ():
            out.pop(key, None)
        return out

    def model_dump_json(self) -> str:
        import json

        return json.dumps(self.model_dump("json"))

    @classmethod
    def model_validate(cls, obj: Any) -> State[Any]:
        """A state from a `State` or from the dict `model_dump` gives."""
        if isinstance(obj, State):
            return obj
        if not isinstance(obj, dict) or "type" not in obj:
            raise ValueError(f"A state needs at least a 'type'; got {obj!r}")
        unknown = set(obj) - {"type", "name", "timestamp", "message", "state_details", "data", "id"}
        if unknown:
            raise ValueError(f"Unknown state field(s) {sorted(unknown)}")
        details = obj.get("state_details")
        timestamp = obj.get("timestamp")
        return cls(
            _coerce_type(obj["type"]),
            obj.get("name"),
            obj.get("message"),
            obj.get("data"),
            _parse_time(timestamp) if timestamp is not None else None,
            StateDetails.coerce(details) if details is not None else None,
        )

    @classmethod
    def model_validate_json(cls, text: str | bytes) -> State[Any]:
        import json

        return cls.model_validate(json.loads(text))

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> State[R]:
        """A copy with a fresh timestamp (as Prefect's: a copy is a new state)."""
        import copy as _copy

        fields = {
            "type": self.type,
            "name": self.name,
            "message": self.message,
            "data": _copy.deepcopy(self.data) if deep else self.data,
            "timestamp": _dt.datetime.now(_UTC),
            "state_details": self.state_details.model_copy(),
            **(update or {}),
        }
        return State(**fields)

    def fresh_copy(self, **kwargs: Any) -> State[R]:
        return self.model_copy(**kwargs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (
            self.type is other.type
            and self.name == other.name
            and self.timestamp == other.timestamp
            and self.message == other.message
            and self.state_details == other.state_details
            and _same_data(self.data, other.data)
        )

    def __hash__(self) -> int:
        return hash((*self._run_ids_now(), self.timestamp, self.type))

    def __str__(self) -> str:
        parts = []
        if self.message:
            parts.append(repr(self.message))
        if self.name.lower() != self.type.value.lower():
            parts.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(parts)})"

    __repr__ = __str__


# How often, and how far apart, a result kept as record metadata is read before its
# absence is an error (a result may be written a moment after its state is seen).
RESULT_READ_MAXIMUM_ATTEMPTS = 10
RESULT_READ_RETRY_DELAY = 0.25


def _is_record_metadata(data: Any) -> bool:
    records = sys.modules.get("flowbus._result_records")  # loaded once a record was made
    return records is not None and isinstance(data, records.ResultRecordMetadata)


def _record_value(data: Any, retry: bool = True) -> Any:
    """`data` itself, or the value of the result record it is (or whose metadata it is)."""
    records = sys.modules.get("flowbus._result_records")
    if records is None:
        return data
    if isinstance(data, records.ResultRecord):
        return data.result
    if not isinstance(data, records.ResultRecordMetadata):
        return data
    import time

    from flowbus._result_store import ResultStore

    attempts = RESULT_READ_MAXIMUM_ATTEMPTS if retry else 1
    for attempt in range(1, attempts + 1):
        try:
            return ResultStore._from_metadata_sync(data).result
        except Exception:
            if attempt >= attempts:
                raise
            time.sleep(RESULT_READ_RETRY_DELAY)
    raise AssertionError("unreachable")  # pragma: no cover


def _same_data(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # e.g. arrays whose == is elementwise
        return False


# A state's default name is its type's, capitalised word by word ("Completed").
_DEFAULT_NAMES = {t: " ".join(part.capitalize() for part in t.value.split("_")) for t in StateType}


_DEFAULT_MESSAGES = {
    StateType.FAILED: "Run failed.",
    StateType.CRASHED: "Run crashed.",
    StateType.CANCELLED: "Run cancelled.",
}


# The constructors (`Completed(...)`, `Scheduled(scheduled_time=...)`, ...) live in
# their own module.
from flowbus._state_constructors import (  # noqa: E402
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Cached,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    InfrastructurePending,
    Late,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    Submitting,
    Suspended,
)

# Prefect's `return_value_to_state` (result records), and the other helpers over
# states (Prefect's prefect.states functions), kept in their own modules.
from flowbus._state_records import return_value_to_state, to_state_create  # noqa: E402
from flowbus._state_rules import (  # noqa: E402
    StateGroup,
    aget_state_exception,
    araise_state_exception,
    exception_to_crashed_state,
    exception_to_failed_state,
    format_exception,
    get_state_exception,
    is_state_iterable,
    raise_state_exception,
)

__all__ = [
    "AwaitingConcurrencySlot",
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "InfrastructurePending",
    "Late",
    "Paused",
    "Pending",
    "ResultRef",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateGroup",
    "StateType",
    "Submitting",
    "Suspended",
    "aget_state_exception",
    "araise_state_exception",
    "exception_to_crashed_state",
    "exception_to_failed_state",
    "format_exception",
    "get_state_exception",
    "is_state_iterable",
    "raise_state_exception",
    "return_value_to_state",
    "to_state_create",
]
