"""Active/standby and crashes: one leader, fast takeover, exactly one run and job per event."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.embedded import EmbeddedNats
from events.settings import NatsSettings
from orchestrator.leader import LEASE_KEY
from tests.orchestrator.support import deploy, flow_runs, jobs, start, wait_for_runs, wait_until

TTL = 2.0
TOTAL = 600


@pytest.fixture
async def short_lease_bus(nats_server: EmbeddedNats, nats_settings: NatsSettings) -> AsyncIterator[Bus]:
    settings = nats_settings.model_copy(update={"lease_ttl_seconds": TTL})
    bus = await Bus.connect(settings)
    try:
        yield bus
    finally:
        await bus.destroy_layout()
        await bus.close()


async def test_only_one_instance_leads_and_the_standby_takes_over(short_lease_bus: Bus) -> None:
    bus = short_lease_bus
    await deploy(bus, triggers=[{"expect": ["a.b"]}])
    first = await start(bus, identity="first")
    second_task = asyncio.create_task(start(bus, identity="second"))
    await asyncio.sleep(TTL)
    assert not second_task.done()  # the standby waits
    assert first.orch.leading.is_set()
    first.task.cancel()  # dies without releasing its lease
    with pytest.raises(asyncio.CancelledError):
        await first.task
    died = time.monotonic()
    second = await asyncio.wait_for(second_task, TTL * 4)
    assert time.monotonic() - died < TTL * 3
    assert await second.orch.lease.holder() == "second"
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await wait_for_runs(bus, 1)
    await second.close()


async def test_clean_stop_hands_over_at_once(short_lease_bus: Bus) -> None:
    bus = short_lease_bus
    first = await start(bus, identity="first")
    second_task = asyncio.create_task(start(bus, identity="second"))
    await asyncio.sleep(0.3)
    await first.close()
    stopped = time.monotonic()
    second = await asyncio.wait_for(second_task, TTL * 3)
    assert time.monotonic() - stopped < TTL
    await second.close()


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", "from flowbus.cli import main; main()", "orchestrator",
             "--log-level", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=sink,
        )


async def test_killed_orchestrator_leaves_exactly_one_run_and_job_per_event(
    short_lease_bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    bus = short_lease_bus
    env = {**flowbus_env, "PYTHONPATH": os.getcwd(), "FLOWBUS_LEASE_TTL_SECONDS": str(TTL),
           "FLOWBUS_ORCHESTRATOR_ACK_WAIT_SECONDS": "2",
           "FLOWBUS_ORCHESTRATOR_FETCH_WAIT_SECONDS": "0.1"}
    await deploy(bus, triggers=[{"expect": ["load.item"], "parameters": {"n": "{{ event.data.n }}"}}])
    leases = await bus.kv(bus.layout.leases)
    first = _spawn(env, tmp_path / "first.log")
    try:
        await wait_until(lambda: _consumer_ready(bus), within=20)
        events = [CloudEvent.create("load.item", source="load", data={"n": n}) for n in range(TOTAL)]
        publisher = asyncio.create_task(_publish_paced(bus, events))
        await wait_until(lambda: _runs_at_least(bus, 30), within=20)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert not publisher.done()  # killed mid-stream
        await publisher
        await leases.get(LEASE_KEY)
        second = _spawn(env, tmp_path / "second.log")
        try:
            await wait_until(lambda: _runs_at_least(bus, TOTAL), within=40)
            await asyncio.sleep(TTL + 1)  # let any redelivery happen
            runs = await flow_runs(bus)
            assert len(runs) == TOTAL
            assert sorted(r.parameters["n"] for r in runs) == list(range(TOTAL))
            job_ids = [j["flow_run_id"] for j in await jobs(bus)]
            assert sorted(job_ids) == sorted(r.id for r in runs)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0, (tmp_path / "second.log").read_text()
    finally:
        if first.poll() is None:
            first.kill()


async def _consumer_ready(bus: Bus) -> bool:
    # The consumer exists from the stream's creation; ready means the leader is fetching.
    return any(c.name == "orchestrator" and (c.num_waiting or 0) > 0
               for c in await bus.consumers(bus.layout.events_stream))


async def _runs_at_least(bus: Bus, n: int) -> bool:
    kv = await bus.kv(bus.layout.flow_runs)
    return len(await kv.keys()) >= n


async def _publish_paced(bus: Bus, events: list[CloudEvent]) -> None:
    for first in range(0, len(events), 20):
        await bus.publish_many(events[first : first + 20])
        await asyncio.sleep(0.02)
