"""Actions end to end on a real orchestrator and NATS: chaining, retries, state changes."""

from __future__ import annotations

from typing import Any

from events import automation_store as store
from events.bus import Bus
from events.deployments import get_deployment
from events.records import FlowRun
from orchestrator.service import Orchestrator
from tests.automations.support import event, finished_run, flow_runs, wait_events, wait_until
from tests.orchestrator.support import deploy


def chain(source: str, target: str, **action: Any) -> dict[str, Any]:
    return {
        "name": f"{source} then {target}",
        "trigger": {"expect": ["flowbus.flow-run.Completed"], "match": {"data.deployment_name": source}},
        "actions": [{"type": "run-deployment", "deployment": target, **action}],
    }


async def runs_of(bus: Bus, deployment: str) -> list[FlowRun]:
    return [r for r in await flow_runs(bus) if r.deployment_name == deployment]


async def test_completed_flow_runs_the_next_with_its_result_as_a_parameter(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    await deploy(bus, "extract")
    await deploy(bus, "load", parameters={"mode": "append"})
    await store.create_automation(bus, chain("extract", "load", parameters={
        "rows": "{{ result }}", "day": "{{ flow_run.parameters.day }}", "origin": "{{ flow_run.id }}",
    }))
    await wait_until(lambda: _has(orchestrator, 1))
    await finished_run(bus, "extract", result=[1, 2, 3], parameters={"day": "2026-03-01"})

    async def chained() -> bool:
        return bool(await runs_of(bus, "load"))

    await wait_until(chained)
    (run,) = await runs_of(bus, "load")
    assert run.parameters == {"mode": "append", "rows": [1, 2, 3], "day": "2026-03-01", "origin": "run-a"}
    assert run.state.name == "Scheduled"


async def _has(orchestrator: Orchestrator, count: int) -> bool:
    return len(orchestrator.automations.catalog.automations) >= count


async def test_run_deployment_without_a_name_runs_the_deployment_of_the_event(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    await deploy(bus, "report")
    await store.create_automation(bus, {
        "name": "rerun on request", "trigger": {"expect": ["ops.rerun"]},
        "actions": [{"type": "run-deployment", "parameters": {"why": "{{ event.data.why }}"}}],
    })
    await wait_until(lambda: _has(orchestrator, 1))
    await bus.publish(event("ops.rerun", subject="flowbus.deployment.report", data={"why": "stale"}))

    async def ran() -> bool:
        return bool(await runs_of(bus, "report"))

    await wait_until(ran)
    assert (await runs_of(bus, "report"))[0].parameters == {"why": "stale"}


async def _runner_fails_or_completes(bus: Bus, run_id: str, outcomes: list[str], seen: int) -> None:
    """What a runner does with each job: claim the run and finish it with the next outcome."""
    from events.records import State
    from orchestrator.creation import state_event

    kv = await bus.kv(bus.layout.flow_runs)
    while outcomes:
        entry = await kv.get(run_id)
        assert entry is not None
        run = FlowRun.model_validate_json(entry.value)
        if run.state.name in ("AwaitingRetry", "Scheduled") and run.run_count == seen:
            outcome = outcomes.pop(0)
            seen += 1
            done = run.model_copy(update={"state": State.named(outcome), "run_count": seen})
            await kv.put(run_id, done.model_dump_json().encode())
            await bus.publish(state_event(done))
        await _pause()


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.02)


async def test_a_flow_that_fails_twice_then_succeeds_under_a_retry_automation(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    import asyncio

    await deploy(bus, "flaky")
    await store.create_automation(bus, {
        "name": "retry flaky", "trigger": {"expect": ["flowbus.flow-run.Failed"]},
        "actions": [{"type": "retry-flow-run", "max_attempts": 5}],
    })
    await wait_until(lambda: _has(orchestrator, 1))
    await finished_run(bus, "flaky", "Failed", run_id="flaky-1", run_count=1)
    runner = asyncio.create_task(_runner_fails_or_completes(bus, "flaky-1", ["Failed", "Completed"], 1))
    # the runner saw attempt 1 fail (above); attempts 2 (fails) and 3 (completes) follow
    runner_state: dict[str, int] = {}

    async def completed() -> bool:
        kv = await bus.kv(bus.layout.flow_runs)
        record = FlowRun.model_validate_json((await kv.get("flaky-1")).value)  # type: ignore[union-attr]
        runner_state["count"] = record.run_count
        return record.state.name == "Completed"

    try:
        await wait_until(completed)
    finally:
        runner.cancel()
    assert runner_state["count"] == 3


async def test_retry_stops_at_max_attempts(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, "flaky")
    await store.create_automation(bus, {
        "name": "retry flaky", "trigger": {"expect": ["flowbus.flow-run.Failed"]},
        "actions": [{"type": "retry-flow-run", "max_attempts": 2}],
    })
    await wait_until(lambda: _has(orchestrator, 1))
    await finished_run(bus, "flaky", "Failed", run_id="flaky-2", run_count=2)
    (executed,) = await wait_events(bus, "flowbus.automation.action.executed")
    assert "skipped" in executed.data["details"]
    kv = await bus.kv(bus.layout.flow_runs)
    assert FlowRun.model_validate_json((await kv.get("flaky-2")).value).state.name == "Failed"  # type: ignore[union-attr]


async def test_cancel_and_change_state_and_pause_deployment(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, "slow")
    await store.create_automation(bus, {
        "name": "stop it", "trigger": {"expect": ["ops.stop"]},
        "actions": [
            {"type": "cancel-flow-run", "flow_run_id": "{{ event.data.run }}"},
            {"type": "change-flow-run-state", "flow_run_id": "{{ event.data.other }}", "state": "Failed",
             "message": "stopped by {{ event.source }}"},
            {"type": "pause-deployment", "deployment": "slow"},
        ],
    })
    await wait_until(lambda: _has(orchestrator, 1))
    first = await finished_run(bus, "slow", "Running", run_id="r1", publish=False)
    await finished_run(bus, "slow", "Running", run_id="r2", publish=False)
    await bus.publish(event("ops.stop", data={"run": first.id, "other": "r2"}))
    kv = await bus.kv(bus.layout.flow_runs)

    async def done() -> bool:
        return (await get_deployment(bus, "slow")).paused

    await wait_until(done)
    assert FlowRun.model_validate_json((await kv.get("r1")).value).state.name == "Cancelling"  # type: ignore[union-attr]
    r2 = FlowRun.model_validate_json((await kv.get("r2")).value)  # type: ignore[union-attr]
    assert (r2.state.name, r2.state.message) == ("Failed", "stopped by /test")
