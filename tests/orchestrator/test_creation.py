"""Events in, flow runs out: exactly once, with their jobs and state events."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.records import FlowRun, flow_run_id_for
from events.triggers import trigger_id
from orchestrator.service import Orchestrator
from tests.orchestrator.support import deploy, flow_runs, jobs, wait_for_runs, wait_until


async def _collect(bus: Bus, pattern: str, into: list[CloudEvent]) -> None:
    async for event in bus.tail(pattern):
        into.append(event)


async def test_matching_event_creates_one_run_with_job_and_scheduled_event(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    seen: list[CloudEvent] = []
    tail = asyncio.create_task(_collect(bus, "flowbus.flow-run.*", seen))
    await asyncio.sleep(0.1)
    trigger = {"expect": ["com.github.push"], "parameters": {"n": "{{ event.data.count }}"}}
    deployment = await deploy(bus, triggers=[trigger], parameters={"n": 0, "x": "default"})
    await wait_until(lambda: _indexed(orchestrator, 1))
    event = CloudEvent.create("com.github.push", source="gh", data={"count": 3})
    await bus.publish(event)
    [run] = await wait_for_runs(bus, 1)
    assert run.id == flow_run_id_for("trigger", trigger_id(deployment.id, trigger), "gh", event.id)
    assert run.parameters == {"n": 3, "x": "default"}
    assert run.state.name == "Scheduled"
    assert run.triggering_event == {"id": event.id, "source": "gh", "type": "com.github.push",
                                    "time": event.time.isoformat()}
    await wait_until(lambda: _has(seen, "flowbus.flow-run.Scheduled"))
    # The job carries the record as created and the revision it is stored at.
    stored = await (await bus.kv(bus.layout.flow_runs)).get(run.id)
    assert stored is not None
    [job] = await jobs(bus)
    assert {k: job[k] for k in ("flow_run_id", "deployment_id", "attempt", "revision")} == {
        "flow_run_id": run.id, "deployment_id": deployment.id, "attempt": 1,
        "revision": stored.revision}
    assert FlowRun.model_validate(job["record"]) == run
    tail.cancel()


async def _indexed(orch: Orchestrator, count: int) -> bool:
    return len(orch.catalog.index) >= count


async def _has(seen: list[CloudEvent], event_type: str) -> bool:
    return any(e.type == event_type for e in seen)


async def test_non_matching_event_creates_nothing(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"], "match": {"source": "yes"}}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    await bus.publish(CloudEvent.create("a.b", source="no"))
    await bus.publish(CloudEvent.create("a.c", source="yes"))
    await bus.publish(CloudEvent.create("a.b", source="yes"))
    await wait_for_runs(bus, 1)
    await asyncio.sleep(0.3)
    assert len(await flow_runs(bus)) == 1


async def test_redelivered_event_creates_one_run(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"]}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    event = CloudEvent.create("a.b", source="s")
    await bus.publish(event)
    await wait_for_runs(bus, 1)
    # The same event again past JetStream's dedup (another stream message): same run id.
    await bus.publish_raw(f"{bus.layout.events_prefix}.a.b", bus.encode(event), {})
    await asyncio.sleep(0.5)
    assert len(await flow_runs(bus)) == 1
    assert len(await jobs(bus)) == 1


async def test_template_failure_creates_no_run_and_emits_action_failed(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    seen: list[CloudEvent] = []
    tail = asyncio.create_task(_collect(bus, "flowbus.automation.action.failed", seen))
    await asyncio.sleep(0.1)
    await deploy(bus, triggers=[{"expect": ["a.b"], "parameters": {"x": "{{ event.data.missing }}"}}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    await bus.publish(CloudEvent.create("a.b", source="s", data={}))
    await wait_until(lambda: _has(seen, "flowbus.automation.action.failed"))
    assert "missing" in seen[0].data["reason"]
    assert await flow_runs(bus) == []
    tail.cancel()


async def test_paused_deployment_creates_no_run(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, "paused", triggers=[{"expect": ["a.b"]}], paused=True)
    await deploy(bus, "live", triggers=[{"expect": ["a.b"]}])
    await wait_until(lambda: _indexed(orchestrator, 2))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    [run] = await wait_for_runs(bus, 1)
    await asyncio.sleep(0.3)
    assert [r.deployment_name for r in await flow_runs(bus)] == ["live"]
    assert run.deployment_name == "live"


async def test_manual_run_request_creates_the_derived_run(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, "manual", parameters={"a": 1, "b": 2})
    await wait_until(lambda: _known(orchestrator, "manual"))
    request = CloudEvent.create(
        "flowbus.deployment.run-requested", source="flowbus/cli",
        subject="flowbus.deployment.manual",
        data={"deployment": "manual", "parameters": {"b": 3}, "tags": ["x"], "name": "mine"},
    )
    await bus.publish(request)
    [run] = await wait_for_runs(bus, 1)
    assert run.id == flow_run_id_for("manual", "flowbus/cli", request.id)
    assert (run.parameters, run.name, "x" in run.tags) == ({"a": 1, "b": 3}, "mine", True)
    await bus.publish(request)  # a retried request maps to the same run
    await asyncio.sleep(0.3)
    assert len(await flow_runs(bus)) == 1


async def _known(orch: Orchestrator, name: str) -> bool:
    return orch.catalog.get(name) is not None


async def test_malformed_run_request_is_refused_with_reason(bus: Bus, orchestrator: Orchestrator) -> None:
    seen: list[CloudEvent] = []
    tail = asyncio.create_task(_collect(bus, "flowbus.automation.action.failed", seen))
    await asyncio.sleep(0.1)
    for data in ({"deployment": ""}, {"deployment": "nope"}, ["not", "an", "object"],
                 {"deployment": "x", "scheduled_start_time": "2026-01-01T00:00:00"}):
        await bus.publish(CloudEvent.create("flowbus.deployment.run-requested", source="h", data=data))
    await wait_until(lambda: _count(seen, 4))
    reasons = " | ".join(e.data["reason"] for e in seen)
    assert "does not exist" in reasons and "malformed" in reasons
    assert await flow_runs(bus) == []
    tail.cancel()


async def _count(seen: list[CloudEvent], n: int) -> bool:
    return len(seen) >= n


async def test_schedule_after_delays_the_job(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"], "schedule_after": 3600}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    [run] = await wait_for_runs(bus, 1)
    assert (run.expected_start_time - run.created).total_seconds() >= 3599
    assert await jobs(bus) == []
    orchestrator.clock.advance(3601)  # type: ignore[attr-defined]
    await orchestrator.tracker.load()
    await orchestrator.tick()
    assert [j["flow_run_id"] for j in await jobs(bus)] == [run.id]


async def test_manual_run_for_later_waits_for_its_time(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, "later")
    await wait_until(lambda: _known(orchestrator, "later"))
    start = orchestrator.clock() + timedelta(hours=1)
    await bus.publish(CloudEvent.create(
        "flowbus.deployment.run-requested", source="flowbus/sdk",
        data={"deployment": "later", "scheduled_start_time": start.isoformat()},
    ))
    [run] = await wait_for_runs(bus, 1)
    assert run.expected_start_time == start
    assert await jobs(bus) == []


async def test_deleted_deployment_stops_triggering(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, "gone", triggers=[{"expect": ["a.b"]}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    kv = await bus.kv(bus.layout.deployments)
    await kv.delete("gone")

    async def emptied() -> bool:
        return len(orchestrator.catalog.index) == 0 and orchestrator.catalog.get("gone") is None

    await wait_until(emptied)
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await asyncio.sleep(0.3)
    assert await flow_runs(bus) == []
