"""The messages about flow runs that two parts exchange, as typed models.

- :class:`RunRequested`: the data of ``flowbus.deployment.run-requested`` (the
  gateway, the CLI and the SDK write it; the orchestrator reads it);
- :class:`Job`: one attempt's message on ``<ns>.runs.<pool>`` (the orchestrator
  writes it; runners read it);
- :class:`FlowRunStateEvent`: the data of ``flowbus.flow-run.<State>`` (the record
  plus the deployment's name; written by the orchestrator, the runners and the
  gateway, read by triggers and automations).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from events.cloudevent import CloudEvent
from events.records import FlowRun, flow_run_id_for

RUN_REQUESTED = "flowbus.deployment.run-requested"
MAX_JOB_BYTES = 4096


class RunRequested(BaseModel):
    """The ``data`` of a ``flowbus.deployment.run-requested`` event (docs/contract.md)."""

    model_config = ConfigDict(extra="ignore")

    deployment: str = Field(min_length=1, max_length=128, description="deployment name")
    flow_run_id: str | None = Field(default=None, description="the id the requester derived")
    parameters: dict[str, Any] = Field(default_factory=dict, description="overrides of defaults")
    tags: list[str] = Field(default_factory=list, max_length=64, description="extra tags")
    name: str | None = Field(default=None, max_length=256, description="flow-run name")
    scheduled_start_time: datetime | None = Field(default=None, description="start no earlier")

    @field_validator("scheduled_start_time")
    @classmethod
    def _has_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-01-01T09:00:00Z")
        return value

    @field_serializer("scheduled_start_time")
    def _as_isoformat(self, value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()


def run_requested_event(request: RunRequested, *, source: str, event_id: str) -> CloudEvent:
    """The event carrying ``request``; its ``flow_run_id`` is derived from source and id."""
    data = request.model_copy(
        update={"flow_run_id": flow_run_id_for("manual", source, event_id)})
    return CloudEvent.create(
        RUN_REQUESTED, source=source, id=event_id,
        subject=f"flowbus.deployment.{request.deployment}",
        data=data.model_dump(mode="json"),
    )


class Job(BaseModel):
    """A run job as the orchestrator publishes it (docs/contract.md, Run jobs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    flow_run_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\s.*>]+$",
                             description="key of the flow-run record")
    deployment_id: str | None = Field(default=None, max_length=128)
    attempt: int = Field(default=1, ge=1, le=1_000_000, description="run_count + 1 at publish")
    revision: int | None = Field(default=None, ge=1, description="the record's revision when "
                                 "the job was published (with ``record``)")
    record: FlowRun | None = Field(default=None, description="the record at ``revision``: the "
                                   "runner claims on it without reading the record first")

    @model_validator(mode="after")
    def _record_is_the_runs(self) -> Job:
        if (self.record is None) != (self.revision is None):
            raise ValueError("a run job carries its record and that record's revision together")
        if self.record is not None and (self.record.id != self.flow_run_id
                                        or self.record.run_count + 1 != self.attempt):
            raise ValueError("the record a run job carries must be its run's, at its attempt")
        return self

    @classmethod
    def of(cls, run: FlowRun, revision: int | None = None) -> Job:
        """The job of ``run``'s next attempt; with ``revision`` (the revision ``run`` is
        stored at), the job carries the record too."""
        return cls(flow_run_id=run.id, deployment_id=run.deployment_id,
                   attempt=run.run_count + 1, revision=revision,
                   record=None if revision is None else run)

    def encode_small(self) -> bytes:
        """:meth:`encode`, without the record when it would pass ``MAX_JOB_BYTES``."""
        body = self.encode()
        if self.record is not None and len(body) > MAX_JOB_BYTES:
            body = self.model_copy(update={"record": None, "revision": None}).encode()
        return body

    @property
    def msg_id(self) -> str:
        """``Nats-Msg-Id`` of the job: JetStream stores one copy per attempt."""
        return f"{self.flow_run_id}:{self.attempt}"

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


def parse_job(data: bytes) -> Job:
    """The job in a message; ``ValueError`` saying what is wrong with it."""
    if len(data) > MAX_JOB_BYTES:
        raise ValueError(f"a run job is at most {MAX_JOB_BYTES} bytes, got {len(data)}")
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"a run job must be JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"a run job must be a JSON object, got {type(obj).__name__}")
    return Job.model_validate(obj)


def event_ref(event: CloudEvent) -> dict[str, Any]:
    """What a run records of the event that created it (``FlowRun.triggering_event``):
    its identity, type and time (the time lets a reader measure event-to-run latency)."""
    ref: dict[str, Any] = {"id": event.id, "source": event.source, "type": event.type}
    if event.time is not None:
        ref["time"] = event.time.isoformat()
    return ref


def event_time(ref: dict[str, Any] | None) -> datetime | None:
    """The time :func:`event_ref` recorded, if any (runs made before it was recorded have none)."""
    raw = (ref or {}).get("time")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


class FlowRunStateEvent(FlowRun):
    """The ``data`` of a ``flowbus.flow-run.<State>`` event: the record and its deployment."""

    deployment: str | None = Field(default=None, description="the deployment's name")


def state_change_event(run: FlowRun, *, source: str, stamped: bool = False) -> CloudEvent:
    """The ``flowbus.flow-run.<State>`` event of a record.

    ``stamped``: the event id and time come from the state (run, state, timestamp),
    so publishing the same record twice is deduplicated by JetStream.
    """
    # The record's JSON plus the deployment's name: what FlowRunStateEvent(**dict(run),
    # deployment=...).model_dump(mode="json") gives, without validating the record again.
    data = run.model_dump(mode="json", exclude_none=False)
    data["deployment"] = run.deployment_name
    extra: dict[str, Any] = {}
    if stamped:
        extra = {"id": f"{run.id}:{run.state.name}:{run.state.timestamp.isoformat()}",
                 "time": run.state.timestamp}
    return CloudEvent.create(
        f"flowbus.flow-run.{run.state.name}", source=source,
        subject=f"flowbus.flow-run.{run.id}",
        data=data, **extra,
    )
