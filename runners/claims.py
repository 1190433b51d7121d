"""Claiming a flow run for a job, as pure decisions over the record.

The runner reads the record named by a job and :func:`decide` says what to do;
the runner then writes each change with compare-and-set on the record's revision,
so two runners can never both hold a run. A record that says another runner holds
the run is only taken over once that runner has stopped touching it for
``stale_after`` seconds (it heartbeats far more often): the old attempt is then
Crashed, and retried if the flow's retries allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from events.records import FlowRun, State, StateData, utcnow
from events.runs import Job

WAITING = frozenset({"Scheduled", "Late", "AwaitingRetry", "Resuming"})
HELD = frozenset({"Pending", "Running", "Retrying", "Cancelling"})


Action = Literal["claim", "drop", "later", "crashed"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a job: ``claim`` it, ``drop`` (ack) it, hand it back for
    ``later``, or settle the old attempt, which ``crashed`` (events.attempts)."""

    action: Action
    reason: str
    delay: float | None = None  # ``later``: when to look again (None: the stale period)


def decide(run: FlowRun, job: Job, *, runner_id: str, holding: bool, now: datetime,
           stale_after: float) -> Decision:
    """What a runner does with ``job`` given the current ``run`` record.

    ``holding``: this runner is executing the run right now.
    """
    name = run.state.name
    if run.state.is_final():
        return Decision("drop", f"the run is already {name}")
    if name in WAITING:
        wait = (run.expected_start_time - now).total_seconds()
        if wait > 0.5:
            return Decision("later", f"the run is {name} until {run.expected_start_time}", wait)
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
        )
    # AwaitingConcurrencySlot, Paused: the orchestrator moves them on and sends a new job.
    return Decision("drop", f"the run is {name}; it gets a new job when it can start")


def claimed(run: FlowRun, runner_id: str, now: datetime,
            stale_after: float | None = None) -> tuple[FlowRun, FlowRun]:
    """The two records of a claim: Pending, then Running (a new attempt, its number stamped).

    ``stale_after``: the claiming runner's stale period, stamped into the state data so
    the orchestrator settles a silent attempt after it (docs/runners.md, "Fencing").
    """
    attempt = run.run_count + 1
    data = StateData(attempt=attempt, stale_after=stale_after)
    pending = run.transition(State.named("Pending", data=data), runner_id=runner_id)
    running = pending.transition(
        State.named("Running", data=data), run_count=attempt, start_time=run.start_time or now,
    )
    return pending, running


def body_started(run: FlowRun) -> FlowRun:
    """The record once the attempt's body is about to start (it now counts as a try)."""
    data = run.state.data.model_copy(update={"body_started": True})
    state = run.state.model_copy(update={"data": data})
    return run.model_copy(update={"state": state, "body_runs": run.body_runs + 1,
                                  "updated": utcnow()})


def handed_back(run: FlowRun) -> FlowRun:
    """A run this runner must give up (drain): ready for another runner to claim."""
    target = "Scheduled" if run.state.name == "Pending" else "AwaitingRetry"
    return run.transition(
        State.named(target, message="the runner stopped before the run finished; handed back",
                    data=run.state.data),
        runner_id=None,
    )
