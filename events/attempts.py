"""Attempts of a flow run: their recorded outcomes, and what follows a crash.

Each attempt of a run (``FlowRun.run_count`` when it started) owns one key of the
``<ns>-attempts`` bucket, ``<flow-run-id>.<attempt>``, written exactly once with
KV ``create``:

- by the process that executed the body, the moment the body finished, with its
  outcome (:func:`record_outcome`) -- before the runner records the final state
  or acknowledges the job;
- or by whoever takes the attempt over after its runner stopped heartbeating
  (another runner, the orchestrator, or the runner whose worker died), with a
  ``superseded`` marker (:func:`settle`).

Of the two, exactly one wins. A takeover that finds an outcome concludes the run
from it instead of running the body again; a late outcome of a superseded attempt
is refused. :func:`after_crash` turns what was found into the records to write.
A run left Pending (its claim never finished) has no attempt to settle:
:func:`abandoned_claim` hands it back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from events.errors import AlreadyExists
from events.kv import KV
from events.records import FlowRun, State, StateData, utcnow

# A run whose attempts keep crashing before the body starts (a worker killed while
# importing the flow, over and over) is retried at most this many times for free.
MAX_UNSTARTED_ATTEMPTS = 3


class AttemptOutcome(BaseModel):
    """The value of ``<flow-run-id>.<attempt>`` in the attempts bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow_run_id: str
    attempt: int = Field(ge=1)
    kind: Literal["outcome", "superseded"]
    state_name: str | None = Field(default=None, description="final state of the body")
    message: str | None = None
    result_ref: str | None = Field(default=None, description="object in the results store")
    recorded: datetime = Field(default_factory=utcnow)


def attempt_key(flow_run_id: str, attempt: int) -> str:
    return f"{flow_run_id}.{attempt}"


async def _create_or_read(kv: KV, value: AttemptOutcome) -> AttemptOutcome:
    key = attempt_key(value.flow_run_id, value.attempt)
    try:
        await kv.create(key, value.model_dump_json().encode())
        return value
    except AlreadyExists:
        entry = await kv.get(key, latest=True)  # a replica may not have it yet
        if entry is None:  # expired between the two calls: the bucket keeps a week
            raise
        return AttemptOutcome.model_validate_json(entry.value)


async def record_outcome(kv: KV, flow_run_id: str, attempt: int, state_name: str,
                         message: str | None, result_ref: str | None) -> AttemptOutcome:
    """Record how attempt ``attempt`` ended; what stands (``superseded``: refused)."""
    return await _create_or_read(kv, AttemptOutcome(
        flow_run_id=flow_run_id, attempt=attempt, kind="outcome", state_name=state_name,
        message=message, result_ref=result_ref))


async def settle(kv: KV, flow_run_id: str, attempt: int) -> AttemptOutcome:
    """Close a dead attempt: its recorded outcome if there is one, else ``superseded``."""
    return await _create_or_read(kv, AttemptOutcome(
        flow_run_id=flow_run_id, attempt=attempt, kind="superseded"))


def retry_after_crash(run: FlowRun) -> float | None:
    """The delay before retrying ``run``'s crashed attempt, or None for no retry.

    ``run`` is the record as the crashed attempt left it (Pending/Running/...). An
    attempt whose body never started is retried at once whatever the flow's
    retries (nothing of the user's ran), up to :data:`MAX_UNSTARTED_ATTEMPTS`
    times; one whose body started counts against ``run.retries``.
    """
    if run.state.name == "Cancelling":
        return None
    if not run.state.data.body_started:
        return 0.0 if run.run_count - run.body_runs <= MAX_UNSTARTED_ATTEMPTS else None
    return run.retry_delay_seconds if run.body_runs - run.suspensions <= run.retries else None


def abandoned_claim(run: FlowRun, reason: str) -> FlowRun:
    """The record of a run left ``Pending`` by a runner that stopped mid-claim.

    A claim writes Pending, then Running with the new attempt number; Pending means
    that no attempt started (no worker ran, nothing to settle in the attempts
    bucket, and the attempt number was never taken). The run goes back to Scheduled
    for the next claim; the stopped runner's own next write is refused by the
    compare-and-set.
    """
    return run.transition(
        State.named("Scheduled", message=f"the claim did not finish ({reason}); handed back"),
        runner_id=None)


async def take_over(kv: KV, run: FlowRun, reason: str,
                    now: datetime) -> tuple[AttemptOutcome | None, list[FlowRun]]:
    """How a silent run is taken over: what settled its attempt (None for a claim that
    never finished) and the records to write, in order (runner and orchestrator alike)."""
    if run.state.name == "Pending":
        return None, [abandoned_claim(run, reason)]
    settled = await settle(kv, run.id, run.run_count)
    return settled, after_crash(run, settled, reason, now)


def after_crash(run: FlowRun, settled: AttemptOutcome, reason: str,
                now: datetime) -> list[FlowRun]:
    """The records to write, in order, once attempt ``run.run_count`` is settled.

    An outcome recorded by the attempt concludes the run (Completed, Failed, ...);
    otherwise the attempt is Crashed with ``reason`` and, if :func:`retry_after_crash`
    allows, moved on to AwaitingRetry. A Cancelling run becomes Cancelled.
    """
    data = StateData(attempt=run.run_count, body_started=run.state.data.body_started,
                     stale_after=run.state.data.stale_after)
    if settled.kind == "outcome" and settled.state_name is not None:
        if run.state.name == "Cancelling" and settled.state_name not in ("Completed", "Failed"):
            return [run.transition(State.named("Cancelled", message=f"cancelled; {reason}",
                                               data=data), end_time=now)]
        state = State.named(settled.state_name, message=settled.message, data=data)
        return [run.transition(state, end_time=now, result_ref=settled.result_ref)]
    if run.state.name == "Cancelling":
        return [run.transition(State.named("Cancelled", message=f"cancelled; {reason}",
                                           data=data), end_time=now)]
    delay = retry_after_crash(run)
    crashed = run.transition(State.named("Crashed", message=reason, data=data))
    if delay is None:
        return [crashed]
    why = ("the body had not started" if not run.state.data.body_started
           else f"retry {run.body_runs - run.suspensions} of {run.retries}")
    retried = crashed.transition(
        State.named("AwaitingRetry", message=f"retrying after a crash ({why})", data=data),
        runner_id=None, expected_start_time=now + timedelta(seconds=delay),
    )
    return [crashed, retried]
