"""Filters for flow runs, deployments, flows and artifacts (Prefect's
``prefect.client.schemas.filters``), applied by the client to what the API returns.

Each filter is a pydantic model; nested filters may be given as dicts, as Prefect's
documentation does::

    FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}},
                  expected_start_time={"before_": datetime.now(timezone.utc)})

Within a filter every field given must match (``operator="or_"`` makes any one
enough). ``like_`` matches a case-insensitive substring, as Prefect's SQL ``ILIKE
'%value%'``. An unknown field is refused with its name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def matches(self, value: Any) -> bool:
        raise NotImplementedError


class _Values(_Filter):
    """``any_`` / ``not_any_`` / ``like_`` / ``is_null_`` over one value."""

    any_: list[str] | None = None
    not_any_: list[str] | None = None
    like_: str | None = None
    is_null_: bool | None = None

    def matches(self, value: Any) -> bool:
        text = None if value is None else str(getattr(value, "value", value))
        if self.any_ is not None and text not in self.any_:
            return False
        if self.not_any_ is not None and text in self.not_any_:
            return False
        if self.like_ is not None and (text is None or self.like_.lower() not in text.lower()):
            return False
        return self.is_null_ is None or (text is None) == self.is_null_


class _Times(_Filter):
    """``before_`` / ``after_`` (inclusive) / ``is_null_`` over a time."""

    before_: datetime | None = None
    after_: datetime | None = None
    is_null_: bool | None = None

    def matches(self, value: Any) -> bool:
        if self.is_null_ is not None and (value is None) != self.is_null_:
            return False
        if value is None:
            return self.before_ is None and self.after_ is None
        if self.before_ is not None and value > _aware(self.before_):
            return False
        return self.after_ is None or value >= _aware(self.after_)


class _Tags(_Filter):
    """``all_`` (every one present), ``any_`` (one present), ``is_null_`` (no tags)."""

    all_: list[str] | None = None
    any_: list[str] | None = None
    is_null_: bool | None = None

    def matches(self, value: Any) -> bool:
        tags = set(value or ())
        if self.all_ is not None and not set(self.all_) <= tags:
            return False
        if self.any_ is not None and not tags & set(self.any_):
            return False
        return self.is_null_ is None or (not tags) == self.is_null_


class _Bool(_Filter):
    eq_: bool | None = None

    def matches(self, value: Any) -> bool:
        return self.eq_ is None or bool(value) == self.eq_


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _Combined(_Filter):
    operator: str = "and_"

    def _checks(self, record: Any) -> list[bool]:
        checks = []
        for name, getter in self._fields().items():
            sub = getattr(self, name)
            if sub is not None:
                checks.append(sub.matches(getter(record)) if isinstance(sub, _Filter) else sub(record))
        return checks

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def matches(self, record: Any) -> bool:
        if self.operator not in ("and_", "or_"):
            raise ValueError(f"operator must be 'and_' or 'or_', got {self.operator!r}")
        checks = self._checks(record)
        if not checks:
            return True
        return any(checks) if self.operator == "or_" else all(checks)


# --- flow runs --------------------------------------------------------------------------

class FlowRunFilterId(_Values): ...
class FlowRunFilterName(_Values): ...
class FlowRunFilterTags(_Tags): ...
class FlowRunFilterDeploymentId(_Values): ...
class FlowRunFilterParentTaskRunId(_Values): ...
class FlowRunFilterIdempotencyKey(_Values): ...
class FlowRunFilterWorkQueueName(_Values): ...
class FlowRunFilterStartTime(_Times): ...
class FlowRunFilterEndTime(_Times): ...
class FlowRunFilterExpectedStartTime(_Times): ...
class FlowRunFilterNextScheduledStartTime(_Times): ...
class FlowRunFilterStateType(_Values): ...
class FlowRunFilterStateName(_Values): ...


class FlowRunFilterState(_Combined):
    type: FlowRunFilterStateType | None = None
    name: FlowRunFilterStateName | None = None

    def _fields(self) -> dict[str, Any]:
        return {"type": lambda r: r.state.type, "name": lambda r: r.state.name}


class FlowRunFilter(_Combined):
    id: FlowRunFilterId | None = None
    name: FlowRunFilterName | None = None
    tags: FlowRunFilterTags | None = None
    deployment_id: FlowRunFilterDeploymentId | None = None
    state: FlowRunFilterState | None = None
    start_time: FlowRunFilterStartTime | None = None
    end_time: FlowRunFilterEndTime | None = None
    expected_start_time: FlowRunFilterExpectedStartTime | None = None
    next_scheduled_start_time: FlowRunFilterNextScheduledStartTime | None = None
    parent_task_run_id: FlowRunFilterParentTaskRunId | None = None
    idempotency_key: FlowRunFilterIdempotencyKey | None = None
    work_queue_name: FlowRunFilterWorkQueueName | None = None

    def _fields(self) -> dict[str, Any]:
        def scheduled(r: Any) -> Any:
            return r.expected_start_time if r.state.type.value == "SCHEDULED" else None

        return {
            "id": lambda r: r.id, "name": lambda r: r.name, "tags": lambda r: r.tags,
            "deployment_id": lambda r: r.deployment_id, "state": lambda r: r,
            "start_time": lambda r: r.start_time, "end_time": lambda r: r.end_time,
            "expected_start_time": lambda r: r.expected_start_time,
            "next_scheduled_start_time": scheduled,
            "parent_task_run_id": lambda r: r.parent_task_run_id,
            "idempotency_key": lambda r: r.idempotency_key, "work_queue_name": lambda r: r.work_pool,
        }  # fmt: skip


# --- deployments, flows, work pools -----------------------------------------------------

class DeploymentFilterId(_Values): ...
class DeploymentFilterName(_Values): ...
class DeploymentFilterTags(_Tags): ...
class DeploymentFilterPaused(_Bool): ...
class DeploymentFilterWorkQueueName(_Values): ...


class DeploymentFilter(_Combined):
    id: DeploymentFilterId | None = None
    name: DeploymentFilterName | None = None
    tags: DeploymentFilterTags | None = None
    paused: DeploymentFilterPaused | None = None
    work_queue_name: DeploymentFilterWorkQueueName | None = None

    def _fields(self) -> dict[str, Any]:
        return {"id": lambda d: d.id, "name": lambda d: d.name, "tags": lambda d: d.tags,
                "paused": lambda d: d.paused, "work_queue_name": lambda d: d.work_pool}  # fmt: skip


class FlowFilterId(_Values): ...
class FlowFilterName(_Values): ...
class FlowFilterTags(_Tags): ...


class FlowFilter(_Combined):
    """Flows by name (a flow run matches through its ``flow_name``)."""

    id: FlowFilterId | None = None
    name: FlowFilterName | None = None
    tags: FlowFilterTags | None = None

    def _fields(self) -> dict[str, Any]:
        return {"id": lambda r: r.flow_name, "name": lambda r: r.flow_name, "tags": lambda r: r.tags}


class WorkPoolFilterName(_Values): ...


class WorkPoolFilter(_Combined):
    name: WorkPoolFilterName | None = None

    def _fields(self) -> dict[str, Any]:
        return {"name": lambda r: r.work_pool}


# --- artifacts --------------------------------------------------------------------------

class ArtifactFilterId(_Values): ...
class ArtifactFilterKey(_Values): ...
class ArtifactFilterType(_Values): ...
class ArtifactFilterFlowRunId(_Values): ...
class ArtifactFilterTaskRunId(_Values): ...


class ArtifactFilter(_Combined):
    id: ArtifactFilterId | None = None
    key: ArtifactFilterKey | None = None
    type: ArtifactFilterType | None = None
    flow_run_id: ArtifactFilterFlowRunId | None = None
    task_run_id: ArtifactFilterTaskRunId | None = None

    def _fields(self) -> dict[str, Any]:
        return {name: (lambda a, n=name: _get(a, n)) for name in ("id", "key", "type", "flow_run_id", "task_run_id")}


def _get(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


__all__ = [
    "ArtifactFilter", "ArtifactFilterFlowRunId", "ArtifactFilterId", "ArtifactFilterKey",
    "ArtifactFilterTaskRunId", "ArtifactFilterType", "DeploymentFilter", "DeploymentFilterId",
    "DeploymentFilterName", "DeploymentFilterPaused", "DeploymentFilterTags",
    "DeploymentFilterWorkQueueName", "FlowFilter", "FlowFilterId", "FlowFilterName", "FlowFilterTags",
    "FlowRunFilter", "FlowRunFilterDeploymentId", "FlowRunFilterEndTime",
    "FlowRunFilterExpectedStartTime", "FlowRunFilterId", "FlowRunFilterIdempotencyKey",
    "FlowRunFilterName", "FlowRunFilterNextScheduledStartTime", "FlowRunFilterParentTaskRunId",
    "FlowRunFilterStartTime", "FlowRunFilterState", "FlowRunFilterStateName", "FlowRunFilterStateType",
    "FlowRunFilterTags", "FlowRunFilterWorkQueueName", "WorkPoolFilter", "WorkPoolFilterName",
]  # fmt: skip
