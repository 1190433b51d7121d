"""Trigger state lives in NATS: for_each buckets, restarts, updates, proactive firing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.errors import BusUnavailable
from orchestrator.service import Orchestrator
from tests.orchestrator.support import (
    ManualClock,
    deploy,
    fast_settings,
    flow_runs,
    start,
    wait_for_runs,
    wait_until,
)


async def _indexed(orch: Orchestrator, count: int) -> bool:
    return len(orch.catalog.index) >= count


async def _publish(bus: Bus, *events: CloudEvent) -> None:
    for event in events:
        await bus.publish(event)


async def test_for_each_keeps_a_count_per_label_value(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["order.paid"], "for_each": ["data.customer"], "threshold": 2,
                                 "parameters": {"customer": "{{ event.data.customer }}"}}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    await _publish(bus, *(CloudEvent.create("order.paid", source="s", data={"customer": c})
                          for c in ("ann", "bob", "ann")))
    [run] = await wait_for_runs(bus, 1)
    assert run.parameters == {"customer": "ann"}
    await asyncio.sleep(0.3)
    assert len(await flow_runs(bus)) == 1


async def test_threshold_state_survives_a_restart(bus: Bus, clock: ManualClock) -> None:
    first = await start(bus, clock=clock)
    await deploy(bus, triggers=[{"expect": ["a.b"], "threshold": 2}])
    await wait_until(lambda: _indexed(first.orch, 1))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    state = await bus.kv(bus.layout.trigger_state)
    await wait_until(lambda: _has_keys(state))
    await first.close()
    second = await start(bus, clock=clock)
    await wait_until(lambda: _indexed(second.orch, 1))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await wait_for_runs(bus, 1)
    await second.close()


async def _has_keys(kv: object) -> bool:
    return bool(await kv.keys())  # type: ignore[attr-defined]


async def test_updating_a_deployment_keeps_unchanged_trigger_state(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    kept = {"expect": ["a.b"], "threshold": 2}
    first = await deploy(bus, triggers=[kept], description="v1")
    await wait_until(lambda: _indexed(orchestrator, 1))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    state = await bus.kv(bus.layout.trigger_state)
    await wait_until(lambda: _has_keys(state))
    await deploy(bus, id=first.id, triggers=[kept, {"expect": ["c.d"]}], description="v2")
    await wait_until(lambda: _indexed(orchestrator, 2))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    [run] = await wait_for_runs(bus, 1)
    assert run.deployment_name == "hello"


async def test_compound_trigger_fires_when_all_children_fired(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"type": "compound", "require": "all", "within": 60,
                                 "triggers": [{"expect": ["x.one"]}, {"expect": ["x.two"]}]}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    await bus.publish(CloudEvent.create("x.one", source="s"))
    await asyncio.sleep(0.3)
    assert await flow_runs(bus) == []
    await bus.publish(CloudEvent.create("x.two", source="s"))
    await wait_for_runs(bus, 1)


async def test_sequence_trigger_needs_the_order(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"type": "sequence", "within": 60,
                                 "triggers": [{"expect": ["s.one"]}, {"expect": ["s.two"]}]}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    await bus.publish(CloudEvent.create("s.two", source="s"))
    await bus.publish(CloudEvent.create("s.one", source="s"))
    await asyncio.sleep(0.3)
    assert await flow_runs(bus) == []
    await bus.publish(CloudEvent.create("s.two", source="s"))
    await wait_for_runs(bus, 1)


async def test_proactive_trigger_fires_when_heartbeats_stop(bus: Bus, clock: ManualClock) -> None:
    running = await start(bus, fast_settings(), clock=clock)
    orch = running.orch
    await deploy(bus, triggers=[{"posture": "Proactive", "expect": ["svc.heartbeat"], "within": 60,
                                 "parameters": {"what": "{{ event.type }}"}}])
    await wait_until(lambda: _indexed(orch, 1))
    await orch.evaluator.arm(orch.catalog.index)
    clock.advance(30)
    await orch.tick()
    assert await flow_runs(bus) == []
    clock.advance(31)
    await orch.tick()
    [run] = await flow_runs(bus)
    assert run.parameters == {"what": "flowbus.trigger.proactive"}
    clock.advance(600)
    await orch.tick()
    assert len(await flow_runs(bus)) == 1  # a silence fires once
    await running.close()


async def test_proactive_deadline_survives_failover(bus: Bus, clock: ManualClock) -> None:
    first = await start(bus, clock=clock)
    await deploy(bus, triggers=[{"posture": "Proactive", "expect": ["svc.heartbeat"],
                                 "after": ["svc.started"], "within": timedelta(seconds=60).total_seconds()}])
    await wait_until(lambda: _indexed(first.orch, 1))
    await bus.publish(CloudEvent.create("svc.started", source="s"))
    await wait_until(lambda: _deadline_known(first.orch))
    await first.close()
    second = await start(bus, clock=clock)
    clock.advance(61)
    await second.orch.tick()
    assert len(await flow_runs(bus)) == 1
    await second.close()


async def _deadline_known(orch: Orchestrator) -> bool:
    return bool(orch.evaluator.deadlines)


async def test_state_of_a_removed_trigger_is_deleted(bus: Bus, orchestrator: Orchestrator) -> None:
    first = await deploy(bus, triggers=[{"expect": ["a.b"], "threshold": 5}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    state = await bus.kv(bus.layout.trigger_state)
    await wait_until(lambda: _has_keys(state))
    await deploy(bus, id=first.id, triggers=[{"expect": ["a.b"], "threshold": 6}])

    async def retired() -> bool:
        return bool(orchestrator.catalog.retired)

    await wait_until(retired)
    await orchestrator.tick()
    assert await state.keys() == []


async def test_one_event_can_fire_two_children_of_a_compound(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"type": "compound", "require": "all",
                                 "triggers": [{"expect": ["x.one"]}, {"expect": ["x.*"]}]}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    event = CloudEvent.create("x.one", source="s")
    await bus.publish(event)
    await wait_for_runs(bus, 1)
    await bus.publish_raw(f"{bus.layout.events_prefix}.x.one", bus.encode(event), {})  # redelivered
    await asyncio.sleep(0.3)
    assert len(await flow_runs(bus)) == 1


async def test_proactive_for_each_watches_each_source(bus: Bus, clock: ManualClock) -> None:
    running = await start(bus, fast_settings(), clock=clock)
    orch = running.orch
    await deploy(bus, triggers=[{"posture": "Proactive", "expect": ["svc.heartbeat"], "within": 60,
                                 "for_each": ["source"], "parameters": {"who": "{{ event.data.bucket }}"}}])
    await wait_until(lambda: _indexed(orch, 1))
    await bus.publish(CloudEvent.create("svc.heartbeat", source="svc-a"))
    await bus.publish(CloudEvent.create("svc.heartbeat", source="svc-b"))

    async def two_windows() -> bool:
        return len(orch.evaluator.deadlines) == 2

    await wait_until(two_windows)
    clock.advance(40)
    await bus.publish(CloudEvent.create("svc.heartbeat", source="svc-a", id="again"))
    state = await bus.kv(bus.layout.trigger_state)

    async def renewed() -> bool:
        return any(d > clock.now + timedelta(seconds=30) for _, d in orch.evaluator.deadlines.values())

    await wait_until(renewed)
    clock.advance(25)  # svc-b silent for 65 s, svc-a for 25 s
    await orch.tick()
    assert len(await flow_runs(bus)) == 1
    assert len(await state.keys()) == 2
    await running.close()


async def test_proactive_firing_survives_a_failed_run_creation(bus: Bus, clock: ManualClock) -> None:
    running = await start(bus, fast_settings(), clock=clock)
    orch = running.orch
    await deploy(bus, triggers=[{"posture": "Proactive", "expect": ["svc.heartbeat"], "within": 60}])
    await wait_until(lambda: _indexed(orch, 1))
    await orch.evaluator.arm(orch.catalog.index)
    clock.advance(61)
    fire = orch.dispatcher.fire

    async def broken(firing: object) -> None:
        raise BusUnavailable("NATS went away mid-way")

    orch.dispatcher.fire = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(BusUnavailable):
        await orch.tick()
    orch.dispatcher.fire = fire  # type: ignore[method-assign]
    assert await flow_runs(bus) == []
    await orch.tick()
    await orch.tick()
    assert len(await flow_runs(bus)) == 1
    assert orch.evaluator.pending == {}
    await running.close()


async def test_an_event_from_the_future_counts_at_its_arrival(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"], "threshold": 2, "within": 10}])
    await wait_until(lambda: _indexed(orchestrator, 1))
    future = datetime.now(UTC) + timedelta(days=365)
    await bus.publish(CloudEvent.create("a.b", source="s", time=future))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await wait_for_runs(bus, 1)
