"""Late and crashed runs, and retries after a crash (injected clock).

Runs are created by the orchestrator's own run creation and held through the
runner's claim (runners.claims); the test writes only what a runner would write
between the orchestrator's ticks (its claim, its heartbeat at the test's clock).
"""

from __future__ import annotations

from typing import Any

import pytest

from events import attempts
from events.bus import Bus
from events.errors import TransitionRejected
from events.records import Deployment, FlowRun, State
from orchestrator.creation import RunRequest
from orchestrator.service import Orchestrator
from runners import claims
from runners.settings import RunnerSettings
from tests.orchestrator.support import ManualClock, flow_runs, jobs


async def _store(bus: Bus, run: FlowRun) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    await kv.put(run.id, run.model_dump_json().encode())


async def _tick(orch: Orchestrator) -> None:
    await orch.tracker.load()
    await orch.tick()


async def _created(orch: Orchestrator, clock: ManualClock, **fields: Any) -> FlowRun:
    """A run the orchestrator created (Scheduled, due now: its job is published)."""
    return await orch.creator.create(RunRequest(
        flow_run_id="r1", deployment=Deployment(name="d", flow_name="f", **fields), origin="tests",
        parameters={}, expected_start_time=clock.now, idempotency_key="tests:r1"))


async def test_scheduled_run_past_grace_becomes_late(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await _created(orchestrator, clock)
    clock.advance(orchestrator.settings.late_grace_seconds)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.state.name == "Scheduled"  # due: its job is out, but it is not late yet
    assert len(await jobs(bus)) == 1
    clock.advance(1)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.state.name == "Late"
    assert len(await jobs(bus)) == 1  # the same job, not another


async def _held(orch: Orchestrator, clock: ManualClock, *, retries: int = 0, delay: float = 0,
                body: bool = True, attempts: int = 1,
                stale_after: float | None = None) -> FlowRun:
    """A run created by the orchestrator and claimed ``attempts`` times by a runner."""
    run = await _created(orch, clock, retries=retries, retry_delay_seconds=delay)
    kv = await orch.bus.kv(orch.bus.layout.flow_runs)
    for _ in range(attempts):
        if run.state.name != "Scheduled":  # a crashed attempt, handed back for the next
            run = run.transition(State.named("AwaitingRetry"), runner_id=None)
        _, run = claims.claimed(run, "runner-1", clock.now, stale_after)
        if body:
            run = claims.body_started(run)
    run = run.model_copy(update={"updated": clock.now})
    await kv.put(run.id, run.model_dump_json().encode())
    return run


async def test_running_run_without_heartbeat_crashes(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await _held(orchestrator, clock)
    clock.advance(orchestrator.settings.heartbeat_timeout_seconds - 1)
    await _tick(orchestrator)
    assert (await flow_runs(bus))[0].state.name == "Running"
    clock.advance(2)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.state.name == "Crashed"
    assert "no heartbeat" in (run.state.message or "")


async def test_a_silent_run_is_settled_after_its_runners_stale_period(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    """The runner stamps its stale period (worker lease + heartbeat) at the claim; the
    orchestrator waits that long, not its 90 s fallback, exactly like a runner's takeover."""
    stale_after = RunnerSettings(pool="default").stale_after
    held = await _held(orchestrator, clock, retries=1, stale_after=stale_after)
    assert held.state.data.stale_after == stale_after
    assert stale_after < orchestrator.settings.heartbeat_timeout_seconds
    clock.advance(stale_after - 0.5)
    await _tick(orchestrator)
    assert (await flow_runs(bus))[0].state.name == "Running"
    clock.advance(1)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert (run.state.name, run.state.data.stale_after) == ("AwaitingRetry", stale_after)
    assert "retrying after a crash" in (run.state.message or "")


async def test_a_run_left_pending_mid_claim_is_handed_back_not_settled(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    """A runner that stopped between the claim's two writes (Pending, then Running)
    started no attempt: there is nothing to settle (attempt 0 does not exist), and the
    run goes back to Scheduled for the next claim."""
    created = await _created(orchestrator, clock)
    pending, _ = claims.claimed(created, "runner-1", clock.now, 2.0)
    await _store(bus, pending.model_copy(update={"updated": clock.now}))
    clock.advance(2.5)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert (run.state.name, run.runner_id, run.run_count) == ("Scheduled", None, 0)
    assert "the claim did not finish" in (run.state.message or "")
    assert await (await bus.kv(bus.layout.attempts)).keys() == []


async def test_crashed_run_is_retried_when_retries_allow(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await _held(orchestrator, clock, retries=1, delay=10)
    await _tick(orchestrator)
    published = len(await jobs(bus))
    clock.advance(orchestrator.settings.heartbeat_timeout_seconds + 1)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.state.name == "AwaitingRetry"
    assert len(await jobs(bus)) == published  # the retry waits for its delay
    clock.advance(10)
    await _tick(orchestrator)
    assert [(j["flow_run_id"], j["attempt"]) for j in (await jobs(bus))[published:]] == [("r1", 2)]


async def test_an_attempt_whose_body_never_started_is_retried_without_retries(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await _held(orchestrator, clock, retries=0, body=False)
    clock.advance(orchestrator.settings.heartbeat_timeout_seconds + 1)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.state.name == "AwaitingRetry"
    assert "the body had not started" in (run.state.message or "")


async def test_retries_used_up_leaves_the_run_crashed(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await _held(orchestrator, clock, retries=1, attempts=2)
    clock.advance(orchestrator.settings.heartbeat_timeout_seconds + 1)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.state.name == "Crashed"


async def test_a_silent_attempt_that_recorded_its_outcome_is_concluded_from_it(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    held = await _held(orchestrator, clock, retries=3)
    await attempts.record_outcome(await bus.kv(bus.layout.attempts), held.id, 1,
                                  "Completed", "done", held.id)
    clock.advance(orchestrator.settings.heartbeat_timeout_seconds + 1)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert (run.state.name, run.result_ref, run.run_count) == ("Completed", held.id, 1)


def _beat(run: FlowRun, clock: ManualClock) -> FlowRun:
    """The runner's heartbeat write (runners.records.touched), at the test's clock."""
    return run.model_copy(update={"updated": clock.now})


async def test_heartbeat_keeps_a_run_alive(bus: Bus, orchestrator: Orchestrator, clock: ManualClock) -> None:
    run = await _held(orchestrator, clock)
    clock.advance(orchestrator.settings.heartbeat_timeout_seconds - 5)
    await _store(bus, _beat(run, clock))
    clock.advance(10)
    await _tick(orchestrator)
    assert (await flow_runs(bus))[0].state.name == "Running"


async def test_a_heartbeat_racing_the_crash_check_wins(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    stale = await _held(orchestrator, clock)
    clock.advance(orchestrator.settings.heartbeat_timeout_seconds + 1)
    await _store(bus, _beat(stale, clock))
    with pytest.raises(TransitionRejected, match="updated meanwhile"):
        await orchestrator.creator.move(stale, "Crashed", "no heartbeat", unchanged=True)
    assert (await flow_runs(bus))[0].state.name == "Running"
