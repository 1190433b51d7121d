"""The service around the core: racing creators, serve() with metrics, trigger loops."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime

import aiohttp

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.embedded import free_port
from events.records import Deployment
from events.settings import NatsSettings
from orchestrator.creation import RunCreator, RunRequest
from orchestrator.metrics import Metrics
from orchestrator.service import Orchestrator, serve
from tests.orchestrator.support import (
    deploy,
    fast_settings,
    flow_runs,
    jobs,
    wait_for_runs,
    wait_until,
)


async def test_racing_creators_make_one_run_and_one_job(bus: Bus) -> None:
    runs = await bus.kv(bus.layout.flow_runs)
    slots = await bus.kv(bus.layout.concurrency)
    deployment = Deployment(name="race", flow_name="f")
    creators = [RunCreator(bus, runs, slots, fast_settings(), Metrics(), lambda: datetime.now(UTC))
                for _ in range(4)]
    request = RunRequest(flow_run_id="run-1", deployment=deployment, origin="trigger",
                         parameters={}, expected_start_time=datetime.now(UTC), idempotency_key="k")
    created = await asyncio.gather(*(c.create(request) for c in creators))
    assert {r.id for r in created} == {"run-1"}
    assert len(await flow_runs(bus)) == 1
    assert len(await jobs(bus)) == 1


async def test_record_without_job_gets_its_job_on_retry(bus: Bus) -> None:
    runs = await bus.kv(bus.layout.flow_runs)
    slots = await bus.kv(bus.layout.concurrency)
    creator = RunCreator(bus, runs, slots, fast_settings(), Metrics(), lambda: datetime.now(UTC))
    request = RunRequest(flow_run_id="run-2", deployment=Deployment(name="d", flow_name="f"),
                         origin="trigger", parameters={}, expected_start_time=datetime.now(UTC),
                         idempotency_key="k")
    publish_job = creator.publish_job

    async def crash(run: object, **_: object) -> None:
        raise RuntimeError("killed between record and job")

    creator.publish_job = crash  # type: ignore[method-assign,assignment]
    try:
        await creator.create(request)
    except RuntimeError:
        pass
    assert len(await flow_runs(bus)) == 1 and await jobs(bus) == []
    creator.publish_job = publish_job  # type: ignore[method-assign]
    await creator.create(request)  # the redelivered event
    assert [j["flow_run_id"] for j in await jobs(bus)] == ["run-2"]


async def test_a_trigger_does_not_fire_on_events_of_its_own_runs(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{}])  # every event, its own flow-run events included
    await wait_until(lambda: _indexed(orchestrator))
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await wait_for_runs(bus, 1)
    await asyncio.sleep(0.5)
    assert len(await flow_runs(bus)) == 1


async def _indexed(orch: Orchestrator) -> bool:
    return len(orch.catalog.index) >= 1


async def test_serve_reports_ready_exposes_metrics_and_stops(bus: Bus, nats_settings: NatsSettings) -> None:
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(nats_settings, fast_settings(metrics_port=port), ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 10)
    await deploy(bus, triggers=[{"expect": ["a.b"]}])
    await asyncio.sleep(0.5)
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await wait_for_runs(bus, 1)
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    assert 'flowbus_orchestrator_flow_runs_total{origin="trigger",result="created"} 1.0' in text
    stop.set()
    await asyncio.wait_for(task, 15)


def test_orchestrator_command_refuses_a_bad_metrics_port(flowbus_env: dict[str, str]) -> None:
    env = {**flowbus_env, "PYTHONPATH": os.getcwd()}
    for port in ("70000", "-1", "http"):
        result = subprocess.run(
            [sys.executable, "-c", "from flowbus.cli import main; main()", "orchestrator",
             "--metrics-port", port], env=env, capture_output=True, text=True, timeout=30, check=False,
        )
        assert result.returncode == 2 and "metrics-port" in result.stderr


async def test_events_nothing_reacts_to_are_acked_and_matching_ones_still_run(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"]}])
    await wait_until(lambda: _indexed(orchestrator))
    assert orchestrator._idle("x.y") and not orchestrator._idle("a.b")
    await bus.publish_many([CloudEvent.create("x.y", source="s") for _ in range(50)])
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await wait_for_runs(bus, 1)

    async def all_acked() -> bool:
        consumer = orchestrator._consumer
        if consumer is None:
            return False
        info = await consumer.info()
        return info.num_pending == 0 and info.num_ack_pending == 0

    await wait_until(all_acked, within=30)
    unmatched = orchestrator.metrics.events.labels("unmatched")._value.get()
    assert unmatched >= 50  # and the new run's own state events
