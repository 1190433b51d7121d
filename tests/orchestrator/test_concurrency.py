"""Concurrency slots: leases that expire, deployment and tag limits, queued runs started at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from events import concurrency
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.errors import NotFound
from events.records import FlowRun, State
from orchestrator.service import Orchestrator
from tests.orchestrator.support import deploy, flow_runs, jobs, wait_for_runs, wait_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_slots_are_limited_and_released(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.concurrency)
    one = await concurrency.acquire(kv, "db", 2, "a", ttl=30, now=T0)
    two = await concurrency.acquire(kv, "db", 2, "b", ttl=30, now=T0)
    assert one and two and one.key != two.key
    assert await concurrency.acquire(kv, "db", 2, "c", ttl=30, now=T0) is None
    again = await concurrency.acquire(kv, "db", 2, "a", ttl=30, now=T0)
    assert again is not None and again.key == one.key  # a holder asking again keeps its slot
    await concurrency.release(kv, again)
    assert await concurrency.acquire(kv, "db", 2, "c", ttl=30, now=T0) is not None


async def test_a_crashed_holders_slot_expires(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.concurrency)
    assert await concurrency.acquire(kv, "db", 1, "crashed", ttl=30, now=T0)
    assert await concurrency.acquire(kv, "db", 1, "next", ttl=30, now=T0 + timedelta(seconds=29)) is None
    taken = await concurrency.acquire(kv, "db", 1, "next", ttl=30, now=T0 + timedelta(seconds=30))
    assert taken is not None and taken.holder == "next"


async def test_renewal_keeps_the_slot_and_fails_once_lost(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.concurrency)
    slot = await concurrency.acquire(kv, "db", 1, "a", ttl=30, now=T0)
    assert slot is not None
    slot2 = await concurrency.renew(kv, slot, ttl=30, now=T0 + timedelta(seconds=25))
    assert slot2 is not None
    assert await concurrency.acquire(kv, "db", 1, "b", ttl=30, now=T0 + timedelta(seconds=40)) is None
    assert await concurrency.acquire(kv, "db", 1, "b", ttl=30, now=T0 + timedelta(seconds=56))
    assert await concurrency.renew(kv, slot2, ttl=30, now=T0 + timedelta(seconds=57)) is None


async def test_named_limit_occupies_all_or_nothing(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.concurrency)
    with pytest.raises(NotFound):
        await concurrency.acquire_many(kv, "gpu", "w", occupy=1, ttl=30)
    await concurrency.set_limit(kv, "gpu", 3)
    assert len(await concurrency.acquire_many(kv, "gpu", "w1", occupy=2, ttl=30)) == 2
    assert await concurrency.acquire_many(kv, "gpu", "w2", occupy=2, ttl=30) == []
    assert len(await concurrency.acquire_many(kv, "gpu", "w3", occupy=1, ttl=30)) == 1


@pytest.mark.parametrize("name", ["", "x" * 2000])
async def test_bad_limit_names_and_sizes_are_refused(bus: Bus, name: str) -> None:
    kv = await bus.kv(bus.layout.concurrency)
    with pytest.raises(concurrency.InvalidLimit):
        await concurrency.acquire(kv, name, 1, "h", ttl=1)
    with pytest.raises(concurrency.InvalidLimit):
        await concurrency.set_limit(kv, "ok", -1)
    assert concurrency.limit_name("a b/c") != concurrency.limit_name("a_b_c")


async def _finish(bus: Bus, run: FlowRun) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    for name in ("Pending", "Running", "Completed"):
        entry = await kv.get(run.id)
        assert entry is not None
        current = FlowRun.model_validate_json(entry.value)
        moved = current.transition(State.named(name), run_count=1)
        await kv.cas(run.id, moved.model_dump_json().encode(), entry.revision)


async def _indexed(orch: Orchestrator) -> bool:
    return len(orch.catalog.index) >= 1


async def test_enqueued_run_starts_as_soon_as_the_slot_frees(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"]}], concurrency_limit=1)
    await wait_until(lambda: _indexed(orchestrator))
    await bus.publish(CloudEvent.create("a.b", source="s", id="1"))
    [first] = await wait_for_runs(bus, 1)
    await bus.publish(CloudEvent.create("a.b", source="s", id="2"))
    runs = await wait_for_runs(bus, 2)
    [waiting] = [r for r in runs if r.id != first.id]
    assert waiting.state.name == "AwaitingConcurrencySlot"
    assert [j["flow_run_id"] for j in await jobs(bus)] == [first.id]
    await orchestrator.tracker.load()
    await _finish(bus, first)

    async def started() -> bool:
        return [j["flow_run_id"] for j in await jobs(bus)] == [first.id, waiting.id]

    await wait_until(started, within=3)  # no tick: the finished run's watch frees the slot
    states = {r.id: r.state.name for r in await flow_runs(bus)}
    assert states == {first.id: "Completed", waiting.id: "Scheduled"}


async def test_cancel_new_cancels_the_run_over_the_limit(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"]}], concurrency_limit=1, collision_strategy="CANCEL_NEW")
    await wait_until(lambda: _indexed(orchestrator))
    await bus.publish(CloudEvent.create("a.b", source="s", id="1"))
    await bus.publish(CloudEvent.create("a.b", source="s", id="2"))
    runs = await wait_for_runs(bus, 2)
    await asyncio.sleep(0.2)
    runs = await flow_runs(bus)
    assert sorted(r.state.name for r in runs) == ["Cancelled", "Scheduled"]
    assert len(await jobs(bus)) == 1


async def test_tag_limit_applies_across_deployments(bus: Bus, orchestrator: Orchestrator) -> None:
    kv = await bus.kv(bus.layout.concurrency)
    await concurrency.set_limit(kv, "tag-gpu", 1)
    await deploy(bus, "one", triggers=[{"expect": ["a.b"]}], tags=["gpu"])
    await deploy(bus, "two", triggers=[{"expect": ["a.b"]}], tags=["gpu"])
    await wait_until(lambda: _count(orchestrator, 2))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    runs = await wait_for_runs(bus, 2)
    assert sorted(r.state.name for r in runs) == ["AwaitingConcurrencySlot", "Scheduled"]


async def _count(orch: Orchestrator, n: int) -> bool:
    return len(orch.catalog.index) >= n
