"""Claiming a flow run for a job, as pure decisions over the record.

The runner reads the record named by a job and :func:`decide` says what to do;
the runner then writes each change with compare-and-set on the record's revision,
so two runners can never both hold a run. A record that says another runner holds
the run is only taken over once that runner has stopped touching it for
``stale_after`` seconds (it heartbeats far more often): the old attempt is then
Crashed, and retried if the flow's retries allow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.records import FlowRun, State

WAITING = frozenset({"Scheduled", "Late", "AwaitingRetry"})
HELD = frozenset({"Pending", "Running", "Retrying", "Cancelling"})
MAX_JOB_BYTES = 4096


class Job(BaseModel):
    """A run job as the orchestrator publishes it (docs/contract.md, Run jobs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    flow_run_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\s.*>]+$",
                             description="key of the flow-run record")
    deployment_id: str | None = Field(default=None, max_length=128)
    attempt: int = Field(default=1, ge=1, le=1_000_000, description="run_count + 1 at publish")


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


Action = Literal["claim", "drop", "later", "crashed"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a job: ``claim`` it, ``drop`` (ack) it, hand it back for
    ``later``, or mark the old attempt ``crashed`` (then ``retry`` it or not)."""

    action: Action
    reason: str
    retry: bool = False


def flow_retries(run: FlowRun) -> int:
    """The retries of the flow, as the runner that started the attempt recorded them."""
    value: Any = run.state.data.get("flow_retries", 0)
    return value if isinstance(value, int) and value >= 0 else 0


def decide(run: FlowRun, job: Job, *, runner_id: str, holding: bool, now: datetime,
           stale_after: float) -> Decision:
    """What a runner does with ``job`` given the current ``run`` record.

    ``holding``: this runner is executing the run right now.
    """
    name = run.state.name
    if run.state.is_final():
        return Decision("drop", f"the run is already {name}")
    if name in WAITING:
        return Decision("claim", f"the run is {name}")
    if name in HELD:
        if holding:
            return Decision("later", "this runner is executing the run")
        age = (now - run.updated).total_seconds()
        if age < stale_after:
            return Decision("later", f"runner {run.runner_id} holds the run (seen {age:.1f}s ago)")
        return Decision(
            "crashed",
            f"runner {run.runner_id} stopped heartbeating ({age:.1f}s since it last updated the run)",
            retry=name != "Cancelling" and run.run_count <= flow_retries(run),
        )
    # AwaitingConcurrencySlot, Paused: the orchestrator moves them on and sends a new job.
    return Decision("drop", f"the run is {name}; it gets a new job when it can start")


def claimed(run: FlowRun, runner_id: str, now: datetime) -> tuple[FlowRun, FlowRun]:
    """The two records of a claim: Pending, then Running (a new attempt)."""
    pending = run.transition(State.named("Pending"), runner_id=runner_id)
    running = pending.transition(
        State.named("Running"), run_count=run.run_count + 1, start_time=run.start_time or now,
    )
    return pending, running


def crashed(run: FlowRun, reason: str) -> FlowRun:
    """The old attempt marked Crashed (its runner is gone)."""
    if run.state.name == "Cancelling":
        return run.transition(State.named("Cancelled", message=f"cancelled; {reason}"),
                              end_time=None)
    return run.transition(State.named("Crashed", message=reason))


def retried(run: FlowRun) -> FlowRun:
    """A crashed attempt made ready for the next one."""
    return run.transition(State.named("AwaitingRetry", message="retrying after a crash"))


def handed_back(run: FlowRun) -> FlowRun:
    """A run this runner must give up (drain): ready for another runner to claim."""
    target = "Scheduled" if run.state.name == "Pending" else "AwaitingRetry"
    return run.transition(
        State.named(target, message="the runner stopped before the run finished; handed back"),
        runner_id=None,
    )
