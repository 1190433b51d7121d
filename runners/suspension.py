"""What a runner does when a run it holds is suspended (``events/pauses.py``).

A body that calls ``suspend_flow_run`` moves its record to Suspended itself and its
attempt ends with a ``Suspended`` outcome; a run suspended from outside (another
run, with ``flow_run_id=``) is stopped by its runner when the record says so. Either
way the runner then releases the run (no runner holds a Suspended run: resuming it
starts a new attempt on any runner of the pool) and acks the attempt's job.
"""

from __future__ import annotations

from events.errors import TransitionRejected
from events.records import FlowRun, utcnow
from runners.records import HeldRun, Recorder, quietly


def stop_requested(run: FlowRun, runner_id: str) -> bool:
    """The record says: stop this runner's attempt, the run was suspended from outside."""
    pause = run.state.data.pause
    return (run.state.name == "Suspended" and run.runner_id == runner_id
            and pause is not None and pause.requested)


def released(run: FlowRun) -> FlowRun:
    if run.state.name != "Suspended":
        raise TransitionRejected(f"flow run {run.id} is {run.state.name}, not Suspended")
    return run.model_copy(update={"runner_id": None, "updated": utcnow()})


async def release(records: Recorder, held: HeldRun) -> bool:
    """Release a suspended run and ack its job; False if the record is not ours any more
    (it was resumed and claimed meanwhile: the job is acked all the same)."""
    held.finishing = True
    ours = await records.refresh(held) and await records.write(held, released)
    await quietly(held.delivery.ack())
    return ours
