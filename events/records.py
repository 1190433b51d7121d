"""The records every part reads and writes: deployments, flow runs and their states.

They are stored as JSON in KV buckets (``flowbus-deployments``, ``flowbus-flow-runs``)
and carried whole in the ``data`` of flowbus's own events, so a trigger or template
needs no extra lookup. A flow-run record only changes through compare-and-set on
its KV revision after :func:`events.states.check_transition` accepted the move.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from events.errors import TransitionRejected
from events.states import STATE_TYPES, StateType, check_transition

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class PauseDetails(BaseModel):
    """What a Paused or Suspended state records to be resumed (events/pauses.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(description="the pause key (fired once per run)")
    reschedule: bool = Field(
        default=False, description="Suspended: the runner is released; resuming starts a new attempt")
    timeout: datetime | None = Field(
        default=None, description="when the pause expires (the run then fails)")
    run_input_keyset: dict[str, str] | None = Field(
        default=None, description="run-input keys (description, response, schema) if it waits for input")
    requested: bool = Field(
        default=False, description="suspended from outside the run: its runner stops the attempt")


class StateData(BaseModel):
    """What a flow-run state records beyond its name: which attempt, how far it got.

    Written by the runner that holds the attempt; read by whoever takes a crashed
    attempt over (a runner or the orchestrator) to decide whether to retry it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int | None = Field(
        default=None, ge=1, description="the attempt (run_count) this state belongs to")
    body_started: bool = Field(
        default=False, description="the flow's body was started in this attempt")
    stale_after: float | None = Field(
        default=None, gt=0,
        description="seconds without a record update after which this attempt is provably "
        "dead (its runner's worker lease plus heartbeat interval; None: the runner cannot "
        "fence its workers, e.g. inline isolation)")
    pause: PauseDetails | None = Field(
        default=None, description="Paused/Suspended: how to resume")


class State(BaseModel):
    """A state as recorded: type, user-facing name, message, time and attempt data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: StateType
    name: str
    message: str | None = None
    timestamp: datetime = Field(default_factory=utcnow)
    data: StateData = Field(default_factory=StateData)

    @classmethod
    def named(cls, name: str, message: str | None = None, *,
              data: StateData | None = None) -> State:
        """A state by its name, its type looked up (``State.named("Late")``)."""
        if name not in STATE_TYPES:
            raise ValueError(f"unknown state name {name!r}; known: {', '.join(STATE_TYPES)}")
        return cls(type=STATE_TYPES[name], name=name, message=message,
                   data=data or StateData())

    def is_final(self) -> bool:
        return self.type in {
            StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED
        }


class Deployment(BaseModel):
    """A flow made runnable by events, schedules and API calls."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    name: str = Field(pattern=NAME_PATTERN, description="unique deployment name")
    flow_name: str = Field(min_length=1, max_length=256, description="the @flow's name")
    entrypoint: str = Field(
        default="", max_length=1024, description="'path/file.py:fn' or 'package.module:fn'"
    )
    work_pool: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    parameters: dict[str, Any] = Field(default_factory=dict, description="default parameters")
    parameter_schema: dict[str, Any] = Field(default_factory=dict, description="JSON schema")
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    schedules: list[dict[str, Any]] = Field(default_factory=list)
    concurrency_limit: int | None = Field(default=None, ge=1)
    collision_strategy: str = Field(default="ENQUEUE", pattern=r"^(ENQUEUE|CANCEL_NEW)$")
    tags: list[str] = Field(default_factory=list)
    version: str | None = None
    description: str | None = None
    paused: bool = False
    retries: int = Field(
        default=0, ge=0, le=1000, description="the flow's retries, read when it was deployed")
    retry_delay_seconds: float = Field(
        default=0.0, ge=0, le=86_400 * 7, description="the flow's retry delay, read when deployed")
    code_digest: str | None = Field(default=None, description="bundle in flowbus-code, if any")
    durable_tasks: StrictBool = Field(
        default=True, description="a retried or resumed run reuses the tasks it completed")
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow)


class FlowRun(BaseModel):
    """The current record of one flow run (key: ``id`` in ``flowbus-flow-runs``)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    flow_name: str
    deployment_id: str | None = None
    deployment_name: str | None = None
    work_pool: str = "default"
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    state: State
    run_count: int = Field(
        default=0, ge=0,
        description="attempts started so far; the current attempt's number (fencing token)")
    body_runs: int = Field(
        default=0, ge=0, description="attempts whose flow body started (count against retries)")
    retries: int = Field(
        default=0, ge=0, description="crash retries allowed, copied from the deployment")
    retry_delay_seconds: float = Field(
        default=0.0, ge=0, description="delay before a crash retry, copied from the deployment")
    durable_tasks: bool = Field(
        default=True, description="reuse completed tasks in later attempts, copied from the deployment")
    expected_start_time: datetime = Field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow)
    idempotency_key: str | None = Field(default=None, description="what created it, e.g. trigger+event")
    triggering_event: dict[str, Any] | None = Field(
        default=None, description="id, source and type of the event that created it"
    )
    parent_task_run_id: str | None = None
    runner_id: str | None = Field(default=None, description="the runner that holds the run")
    pause_keys: list[str] = Field(
        default_factory=list, description="keys of the pauses that fired (a key fires once)")
    suspensions: int = Field(
        default=0, ge=0, description="attempts that ended Suspended (not counted against retries)")
    result_ref: str | None = Field(default=None, description="where the result is persisted")

    @field_validator("id")
    @classmethod
    def _id_is_key(cls, value: str) -> str:
        if not value or any(c in value for c in " .*>\t\n"):
            raise ValueError(f"flow-run id {value!r} must be non-empty with no spaces, '.', '*' or '>'")
        return value

    def transition(self, state: State, **changes: Any) -> FlowRun:
        """A copy in ``state`` (with ``changes``), or :class:`TransitionRejected` saying why."""
        verdict = check_transition(self.state.name, state.name)
        if not verdict:
            raise TransitionRejected(f"flow run {self.id}: {verdict.reason}")
        return self.model_copy(update={"state": state, "updated": utcnow(), **changes})

    def cancel(self, message: str) -> FlowRun:
        """A copy on its way to cancellation, decided as Prefect 3 decides it.

        ``Cancelled`` at once when no runner holds the run (a SCHEDULED-type run with no
        runner, ``Resuming``, ``Suspended``: its job, if any, is dropped unrun), else
        ``Cancelling`` (its runner stops it and records ``Cancelled``). A final or
        already ``Cancelling`` run is :class:`TransitionRejected`. The API, the command
        line and the automations' cancel all go through this.
        """
        unheld = self.state.name in ("Resuming", "Suspended") or (
            self.state.type is StateType.SCHEDULED and self.runner_id is None)
        return self.transition(State.named("Cancelled" if unheld else "Cancelling", message=message))


def flow_run_id_for(*parts: str) -> str:
    """A deterministic flow-run id from what created it (e.g. trigger id and event identity).

    The same parts always give the same id, so a redelivered event finds the run
    it already created instead of making a second one.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))
