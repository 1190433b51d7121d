"""Actions end to end on a real orchestrator and NATS: chaining, retries, state changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from events import automation_store as store
from events.bus import Bus
from events.deployments import get_deployment, get_flow_run, request_run
from events.records import FlowRun
from events.settings import NatsSettings
from orchestrator.service import Orchestrator
from tests.automations.support import event, flow_runs, held_run, wait_events, wait_until
from tests.live_runs import deploy_flows, flows, inline_runner
from tests.orchestrator.support import deploy
from tests.runners.runner_helpers import wait_final


def chain(source: str, target: str, **action: Any) -> dict[str, Any]:
    return {
        "name": f"{source} then {target}",
        "trigger": {"expect": ["flowbus.flow-run.Completed"], "match": {"data.deployment_name": source}},
        "actions": [{"type": "run-deployment", "deployment": target, **action}],
    }


async def runs_of(bus: Bus, deployment: str) -> list[FlowRun]:
    return [r for r in await flow_runs(bus) if r.deployment_name == deployment]


async def test_completed_flow_runs_the_next_with_its_result_as_a_parameter(
    bus: Bus, orchestrator: Orchestrator, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", flows("rows", "extract"))
    await deploy(bus, "load", parameters={"mode": "append"}, work_pool="elsewhere")  # not run here
    await store.create_automation(bus, chain("extract", "load", parameters={
        "rows": "{{ result }}", "day": "{{ flow_run.parameters.day }}", "origin": "{{ flow_run.id }}",
    }))
    await wait_until(lambda: _has(orchestrator, 1))
    async with inline_runner(bus, nats_settings):  # runs extract: its result is [1, 2, 3]
        extract_id = await request_run(bus, "extract", {"day": "2026-03-01"}, source="/test")
        assert (await wait_final(bus, extract_id, max_wait=60)).state.name == "Completed"

    async def chained() -> bool:
        return bool(await runs_of(bus, "load"))

    await wait_until(chained)
    (run,) = await runs_of(bus, "load")
    assert run.parameters == {"mode": "append", "rows": [1, 2, 3], "day": "2026-03-01",
                              "origin": extract_id}
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


async def test_a_flow_that_fails_twice_then_succeeds_under_a_retry_automation(
    bus: Bus, orchestrator: Orchestrator, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", flows(
        "flaky", "flaky", parameters={"counter": str(tmp_path / "attempts"), "failures": 2}))
    await store.create_automation(bus, {
        "name": "retry flaky", "trigger": {"expect": ["flowbus.flow-run.Failed"]},
        "actions": [{"type": "retry-flow-run", "max_attempts": 5}],
    })
    await wait_until(lambda: _has(orchestrator, 1))
    async with inline_runner(bus, nats_settings):
        run_id = await request_run(bus, "flaky", {}, source="/test")

        async def completed() -> bool:
            record = await get_flow_run(bus, run_id)
            return record is not None and record.state.name == "Completed"

        await wait_until(completed, 60)  # attempts 1 and 2 fail, the automation retries them
    record = await get_flow_run(bus, run_id)
    assert record is not None and record.run_count == 3
    assert len(await wait_events(bus, "flowbus.automation.action.executed", 2)) == 2


async def test_retry_stops_at_max_attempts(
    bus: Bus, orchestrator: Orchestrator, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", flows(
        "flaky", "flaky", parameters={"counter": str(tmp_path / "attempts"), "failures": 99}))
    await store.create_automation(bus, {
        "name": "retry flaky", "trigger": {"expect": ["flowbus.flow-run.Failed"]},
        "actions": [{"type": "retry-flow-run", "max_attempts": 2}],
    })
    await wait_until(lambda: _has(orchestrator, 1))
    async with inline_runner(bus, nats_settings):
        run_id = await request_run(bus, "flaky", {}, source="/test")
        # Attempt 1 fails and is retried; attempt 2 fails and is not.
        retried, executed = await wait_events(bus, "flowbus.automation.action.executed", 2, within=60)
    assert "skipped" not in retried.data["details"] and "skipped" in executed.data["details"]
    record = await get_flow_run(bus, run_id)
    assert record is not None and (record.state.name, record.run_count) == ("Failed", 2)


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
    first = await held_run(bus, "slow", "r1")
    await held_run(bus, "slow", "r2")
    await bus.publish(event("ops.stop", data={"run": first.id, "other": "r2"}))
    kv = await bus.kv(bus.layout.flow_runs)

    async def done() -> bool:
        return (await get_deployment(bus, "slow")).paused

    await wait_until(done)
    assert FlowRun.model_validate_json((await kv.get("r1")).value).state.name == "Cancelling"  # type: ignore[union-attr]
    r2 = FlowRun.model_validate_json((await kv.get("r2")).value)  # type: ignore[union-attr]
    assert (r2.state.name, r2.state.message) == ("Failed", "stopped by /test")
