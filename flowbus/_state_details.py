"""The parts of a state that are not the state itself: `StateDetails` (what a state
says about its run) and `ResultRef` (a result kept in a result store). Both are
public through `flowbus.states`.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass as _dataclass
from dataclasses import fields as _fields
from dataclasses import replace as _replace
from typing import Any

from flowbus.exceptions import MissingResult


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


@_dataclass(slots=True, eq=True)
class StateDetails:
    """What a state says about the run it belongs to, as Prefect's ``state_details``.

    A state built by user code has no run ids; the engine fills them in when the state
    becomes a run's state. That is how a returned state is told apart from a state
    that came from another run (see `return_value_to_state`).
    """

    flow_run_id: str | None = None
    task_run_id: str | None = None
    child_flow_run_id: str | None = None
    scheduled_time: _dt.datetime | None = None
    cache_key: str | None = None
    cache_expiration: _dt.datetime | None = None
    deferred: bool | None = None
    untrackable_result: bool = False
    pause_timeout: _dt.datetime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    refresh_cache: bool | None = None
    retriable: bool | None = None
    transition_id: str | None = None
    task_parameters_id: str | None = None
    traceparent: str | None = None
    deployment_concurrency_lease_id: str | None = None

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def coerce(cls, value: StateDetails | dict[str, Any] | None) -> StateDetails:
        if isinstance(value, StateDetails):
            return value
        if value is None:
            return cls()
        if isinstance(value, dict):
            unknown = set(value) - set(_DETAIL_FIELDS)
            if unknown:
                raise TypeError(f"Unknown state detail(s) {sorted(unknown)}; known: {sorted(_DETAIL_FIELDS)}")
            fields: dict[str, Any] = {
                k: _parse_time(v) if k in _DETAIL_TIMES and isinstance(v, str) else v for k, v in value.items()
            }
            return cls(**fields)
        raise TypeError(f"state_details must be a StateDetails or a dict, got {type(value).__name__}")

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _DETAIL_FIELDS}
        if mode == "json":
            out = {k: v.isoformat() if isinstance(v, _dt.datetime) else v for k, v in out.items()}
        return out

    def model_copy(self) -> StateDetails:
        return _replace(self)


_DETAIL_FIELDS = tuple(f.name for f in _fields(StateDetails))
_DETAIL_TIMES = frozenset({"scheduled_time", "cache_expiration", "pause_timeout"})


def _parse_time(value: Any) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value
    if isinstance(value, str):
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise TypeError(f"A state timestamp must be a datetime or an ISO string, got {value!r}")


__all__ = ["ResultRef", "StateDetails"]
