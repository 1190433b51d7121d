"""Schedules: just-in-time runs, catch-up after downtime, deterministic slots (injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.bus import Bus
from events.schedules import Schedule
from orchestrator.service import Orchestrator
from tests.orchestrator.support import ManualClock, deploy, flow_runs, jobs, start, wait_until

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


async def _tick(orch: Orchestrator) -> None:
    await orch.tracker.load()
    await orch.tick()


async def _known(orch: Orchestrator, name: str) -> bool:
    return orch.catalog.get(name) is not None


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


async def test_only_the_next_slot_has_a_run(bus: Bus, orchestrator: Orchestrator, clock: ManualClock) -> None:
    await deploy(bus, schedules=[{"interval": 60}], created=NOW - timedelta(days=1))
    await wait_until(lambda: _known(orchestrator, "hello"))
    await _tick(orchestrator)
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.expected_start_time == datetime(2026, 3, 1, 12, 1, tzinfo=UTC)
    assert run.state.name == "Scheduled" and "auto-scheduled" in run.tags
    assert await jobs(bus) == []  # not due yet
    clock.advance(31)
    await _tick(orchestrator)
    runs = sorted(await flow_runs(bus), key=lambda r: r.expected_start_time)
    assert [r.expected_start_time.minute for r in runs] == [1, 2]
    assert [j["flow_run_id"] for j in await jobs(bus)] == [runs[0].id]


async def test_catchup_skip_creates_nothing_for_missed_slots(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    await deploy(bus, schedules=[{"interval": 3600, "catchup": "skip"}], created=NOW - timedelta(days=3))
    await wait_until(lambda: _known(orchestrator, "hello"))
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.expected_start_time > NOW


async def test_catchup_latest_runs_the_latest_missed_slot_once(
    bus: Bus, clock: ManualClock
) -> None:
    await deploy(bus, schedules=[{"interval": 3600, "catchup": "latest"}], created=NOW - timedelta(days=3))
    first = await start(bus, clock=clock)
    await wait_until(lambda: _known(first.orch, "hello"))
    await _tick(first.orch)
    runs = sorted(await flow_runs(bus), key=lambda r: r.expected_start_time)
    assert [r.expected_start_time for r in runs] == [NOW.replace(minute=0, second=0),
                                                       NOW.replace(hour=13, minute=0, second=0)]
    assert [j["flow_run_id"] for j in await jobs(bus)] == [runs[0].id]
    await first.close()
    second = await start(bus, clock=clock)  # a restart computes the same slots and ids
    await wait_until(lambda: _known(second.orch, "hello"))
    await _tick(second.orch)
    assert len(await flow_runs(bus)) == 2
    assert len(await jobs(bus)) == 1
    await second.close()


async def test_catchup_latest_ignores_slots_before_the_deployment_existed(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    await deploy(bus, schedules=[{"interval": 3600, "catchup": "latest"}], created=NOW)
    await wait_until(lambda: _known(orchestrator, "hello"))
    await _tick(orchestrator)
    assert len(await flow_runs(bus)) == 1


async def test_paused_deployment_and_inactive_schedule_create_no_runs(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    await deploy(bus, "paused", schedules=[{"interval": 60}], paused=True)
    await deploy(bus, "inactive", schedules=[{"interval": 60, "active": False}])
    await wait_until(lambda: _known(orchestrator, "inactive"))
    await _tick(orchestrator)
    assert await flow_runs(bus) == []


async def test_cron_in_a_time_zone_with_schedule_parameters(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    await deploy(bus, schedules=[{"cron": "0 9 * * *", "timezone": "America/New_York",
                                  "parameters": {"report": "daily"}}], parameters={"report": "x", "k": 1})
    await wait_until(lambda: _known(orchestrator, "hello"))
    await _tick(orchestrator)
    [run] = await flow_runs(bus)
    assert run.expected_start_time == datetime(2026, 3, 1, 14, 0, tzinfo=UTC)  # 09:00 EST
    assert run.parameters == {"report": "daily", "k": 1}


def test_rrule_and_dst_slots() -> None:
    rule = Schedule(rrule="FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0", timezone="Europe/Berlin")
    before_dst = datetime(2026, 3, 20, tzinfo=UTC)
    assert rule.next_after(before_dst) == datetime(2026, 3, 23, 8, 0, tzinfo=UTC)  # CET
    assert rule.next_after(datetime(2026, 3, 24, tzinfo=UTC)) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    interval = Schedule(interval=timedelta(minutes=15), anchor_date=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    assert interval.next_after(datetime(2026, 1, 1, 0, 20, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 35, tzinfo=UTC)
    assert interval.latest_at_or_before(datetime(2026, 1, 1, 0, 20, tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 20, tzinfo=UTC)
