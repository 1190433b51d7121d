"""Debounce, throttle, batch and Proactive resolution with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events import automation_store as store
from events.automations import Batch, Debounce, Throttle
from events.bus import Bus
from orchestrator.automations import flowcontrol
from orchestrator.service import Orchestrator
from tests.automations.support import ManualClock, event, events_of, wait_until

EMIT = {"type": "emit-event", "event": "test.fired",
        "data": {"orders": "{{ events | map(attribute='data') | map(attribute='order') | list }}",
                 "last": "{{ event.data.order }}"}}


async def automation(bus: Bus, orchestrator: Orchestrator, trigger: dict[str, Any], *actions: Any,
                     **extra: Any) -> str:
    made = await store.create_automation(bus, {
        "name": "shaped", "trigger": trigger, "actions": list(actions) or [EMIT], **extra})

    async def known() -> bool:
        return made.id in orchestrator.automations.catalog.automations

    await wait_until(known)
    return made.id


async def publish_handled(bus: Bus, orchestrator: Orchestrator, *events: Any) -> None:
    """Publish events and wait until the orchestrator has handled them."""
    counter = orchestrator.metrics.events
    before = sum(counter.labels(k)._value.get() for k in ("matched", "unmatched"))
    for ev in events:
        await bus.publish(ev)

    async def handled() -> bool:
        now = sum(counter.labels(k)._value.get() for k in ("matched", "unmatched"))
        return bool(now >= before + len(events))

    await wait_until(handled)


async def fired(bus: Bus) -> list[dict[str, Any]]:
    return [e.data for e in await events_of(bus, "test.fired")]


async def wait_fired(bus: Bus, count: int) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(await fired(bus)) >= count

    await wait_until(enough)
    return await fired(bus)


def orders(*names: str, source: str = "/shop") -> list[Any]:
    return [event("shop.order.created", source=source, data={"order": n}) for n in names]


async def test_debounce_fires_once_per_bucket_after_events_stop(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await automation(bus, orchestrator, {"expect": ["shop.order.created"], "for_each": ["source"],
                                         "debounce": {"seconds": 10}})
    await publish_handled(bus, orchestrator, *orders("a1", "a2"), *orders("b1", source="/b"))
    clock.advance(5)
    await publish_handled(bus, orchestrator, *orders("a3"))
    clock.advance(6)  # /b quiet for 11 s, /shop for 6 s
    assert await orchestrator.automations.tick() == 1
    assert [f["last"] for f in await wait_fired(bus, 1)] == ["b1"]
    clock.advance(5)
    assert await orchestrator.automations.tick() == 1
    assert sorted(f["last"] for f in await wait_fired(bus, 2)) == ["a3", "b1"]
    clock.advance(60)
    assert await orchestrator.automations.tick() == 0


async def test_throttle_drops_the_excess(bus: Bus, orchestrator: Orchestrator, clock: ManualClock) -> None:
    await automation(bus, orchestrator, {"expect": ["shop.order.created"],
                                         "throttle": {"limit": 2, "seconds": 60}})
    await publish_handled(bus, orchestrator, *orders("o1", "o2", "o3", "o4"))
    assert len(await wait_fired(bus, 2)) == 2
    clock.advance(61)
    assert await orchestrator.automations.tick() == 0
    await publish_handled(bus, orchestrator, *orders("o5"))
    assert "o5" in [f["last"] for f in await wait_fired(bus, 3)]
    assert len(await fired(bus)) == 3


async def test_throttle_delays_the_excess_until_the_window_frees(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await automation(bus, orchestrator, {"expect": ["shop.order.created"],
                                         "throttle": {"limit": 2, "seconds": 60, "excess": "delay"}})
    await publish_handled(bus, orchestrator, *orders("o1", "o2", "o3"))
    await wait_fired(bus, 2)
    clock.advance(30)
    assert await orchestrator.automations.tick() == 0
    clock.advance(31)
    assert await orchestrator.automations.tick() == 1
    assert len(await wait_fired(bus, 3)) == 3


async def test_batch_fires_on_size_then_on_time_and_templates_see_events(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await automation(bus, orchestrator, {"expect": ["shop.order.created"],
                                         "batch": {"size": 3, "seconds": 30}})
    for name in ("o1", "o2", "o3", "o4"):  # one at a time: a batch keeps their order
        await publish_handled(bus, orchestrator, *orders(name))
    (first,) = await wait_fired(bus, 1)
    assert first["orders"] == ["o1", "o2", "o3"]
    clock.advance(29)
    assert await orchestrator.automations.tick() == 0
    clock.advance(2)
    assert await orchestrator.automations.tick() == 1
    assert (await wait_fired(bus, 2))[1]["orders"] == ["o4"]


async def test_a_proactive_automation_fires_on_silence_and_resolves_when_events_return(
    bus: Bus, orchestrator: Orchestrator, clock: ManualClock
) -> None:
    await automation(
        bus, orchestrator, {"expect": ["svc.heartbeat"], "posture": "Proactive", "within": 10},
        {"type": "emit-event", "event": "test.silent", "data": {"why": "{{ event.type }}"}},
        actions_on_resolve=[{"type": "emit-event", "event": "test.back", "data": {"by": "{{ event.id }}"}}],
    )
    await publish_handled(bus, orchestrator, event("svc.heartbeat"))
    clock.advance(11)
    assert await orchestrator.automations.tick() == 1
    beat = event("svc.heartbeat")
    await publish_handled(bus, orchestrator, beat)

    async def resolved() -> bool:
        return bool(await events_of(bus, "test.back"))

    await wait_until(resolved)
    assert (await events_of(bus, "test.back"))[0].data == {"by": beat.id}
    assert len(await events_of(bus, "flowbus.automation.resolved")) == 1
    assert len(await events_of(bus, "test.silent")) == 1


async def test_the_firing_rate_limit_drops_firings_over_it(bus: Bus, orchestrator: Orchestrator) -> None:
    orchestrator.automations.settings = orchestrator.automations.settings.model_copy(
        update={"max_firings_per_minute": 2})
    await automation(bus, orchestrator, {"expect": ["shop.order.created"]})
    await publish_handled(bus, orchestrator, *orders("o1", "o2", "o3", "o4"))
    await wait_fired(bus, 2)
    assert len(await fired(bus)) == 2
    assert orchestrator.automations.metrics.firings.labels("rate-limited")._value.get() == 2


NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_redelivered_event_is_counted_once_in_a_batch() -> None:
    state, out = flowcontrol.step(Batch(size=2, seconds=5), None, "k1", {"id": 1}, NOW)
    state, out = flowcontrol.step(Batch(size=2, seconds=5), state, "k1", {"id": 1}, NOW)
    assert out == [] and len(state["events"]) == 1


def test_a_redelivered_event_does_not_use_a_throttle_slot() -> None:
    config = Throttle(limit=1, seconds=60)
    state, out = flowcontrol.step(config, None, "k1", {"id": 1}, NOW)
    assert len(out) == 1
    state, again = flowcontrol.step(config, state, "k1", {"id": 1}, NOW)
    assert again == [] and len(state["times"]) == 1


def test_debounce_keeps_the_latest_event_and_moves_the_deadline() -> None:
    config = Debounce(seconds=10)
    state, _ = flowcontrol.step(config, None, "k1", {"n": 1}, NOW)
    state, _ = flowcontrol.step(config, state, "k2", {"n": 2}, NOW.replace(second=5))
    assert flowcontrol.expire(config, state, NOW.replace(second=14))[1] == []
    _, out = flowcontrol.expire(config, state, NOW.replace(second=15))
    assert out == [{"key": "debounce:k2", "events": [{"n": 2}]}]


async def test_a_batch_survives_an_orchestrator_restart(bus: Bus, clock: ManualClock) -> None:
    from tests.automations.support import start

    first = await start(bus, clock)
    await automation(bus, first.orch, {"expect": ["shop.order.created"], "batch": {"size": 5, "seconds": 30}})
    await publish_handled(bus, first.orch, *orders("o1"))
    await publish_handled(bus, first.orch, *orders("o2"))
    await first.close()
    second = await start(bus, clock)
    try:
        clock.advance(31)
        assert await second.orch.automations.tick() == 1
        assert (await wait_fired(bus, 1))[0]["orders"] == ["o1", "o2"]
    finally:
        await second.close()


async def test_changing_a_trigger_purges_its_old_state(bus: Bus, orchestrator: Orchestrator) -> None:
    made = await automation(bus, orchestrator, {"expect": ["shop.order.created"], "threshold": 3})
    await publish_handled(bus, orchestrator, *orders("o1"))
    state = await bus.kv(bus.layout.trigger_state)
    (old_key,) = await state.keys()
    definition = (await store.get_automation(bus, made)).model_dump(mode="json")
    definition["trigger"]["threshold"] = 2
    await store.update_automation(bus, made, {k: v for k, v in definition.items()
                                              if k not in ("id", "created", "updated")})

    async def recompiled() -> bool:
        return old_key.split(".")[0] in orchestrator.automations.catalog.retired

    await wait_until(recompiled)
    await orchestrator.automations.tick()
    assert await state.keys() == []
