"""A claim is one compare-and-set: the record goes from Scheduled to Running.

Every stored revision of the run's record is watched from before the run is asked
for; the runner's first write must already be Running with its runner id and the
attempt number (the fencing token), and no Pending record is ever stored, while
the Pending event is still announced. The job carries the record as created and its
revision, which fences the claim: a record changed since (cancelled) is not claimed.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from runner_helpers import deploy_checked, runner_settings, running, wait_final

from events.bus import Bus
from events.control import ControlRequest, ask
from events.deployments import request_run
from events.records import FlowRun, utcnow
from events.runs import Job
from events.settings import NatsSettings
from tests.orchestrator.support import jobs, start, wait_until

FLOW = """
from flowbus import flow

@flow
def claimed(x: int) -> int:
    return x + 1
"""


async def test_the_runner_claims_a_run_with_one_write_to_running(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    since = utcnow() - timedelta(seconds=1)
    await deploy_checked(bus, "claim-once", FLOW, "claimed", root=tmp_path / "code")
    kv = await bus.kv(bus.layout.flow_runs)
    stored: list[FlowRun] = []
    watching = asyncio.Event()

    async def watch() -> None:
        async for change in kv.watch(on_current=watching.set):
            if change.value is not None:
                stored.append(FlowRun.model_validate_json(change.value))

    watcher = asyncio.create_task(watch())
    orchestrator = await start(bus)
    try:
        await asyncio.wait_for(watching.wait(), 30)
        run_id = await request_run(bus, "claim-once", {"x": 1}, source="tests/claim")
        settings = runner_settings()
        async with running(bus, nats_settings, settings):
            run = await wait_final(bus, run_id, 30)
    finally:
        await orchestrator.close()
        watcher.cancel()
    assert run.state.name == "Completed", run.state.message
    mine = [r for r in stored if r.id == run_id]
    names = [r.state.name for r in mine]
    assert "Pending" not in names, names
    first_held = next(r for r in mine if r.runner_id is not None)
    assert first_held.state.name == "Running", names
    assert (first_held.runner_id, first_held.run_count) == (settings.runner_id, 1)
    assert first_held.state.data.attempt == 1
    assert names[0] == "Scheduled"

    announced = []
    async with asyncio.timeout(10):
        async for event in bus.tail("flowbus.*", since=since):
            if event.subject == f"flowbus.flow-run.{run_id}":
                announced.append(event.type.rsplit(".", 1)[1])
                if announced[-1] == "Completed":
                    break
    assert announced == ["Scheduled", "Pending", "Running", "Completed"]


async def test_a_run_cancelled_after_its_job_went_out_is_not_claimed(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_checked(bus, "claim-cancelled", FLOW, "claimed", root=tmp_path / "code")
    kv = await bus.kv(bus.layout.flow_runs)
    orchestrator = await start(bus)
    try:
        run_id = await request_run(bus, "claim-cancelled", {"x": 1}, source="tests/claim")

        async def published() -> bool:
            return bool(await jobs(bus))

        await wait_until(published, within=30)
        [job] = [Job.model_validate(j) for j in await jobs(bus)]
        assert job.record is not None and job.record.state.name == "Scheduled"
        reply = await ask(bus, ControlRequest(action="cancel", flow_run_id=run_id,
                                              source="flowbus/tests"))
        assert reply.outcome == "ok", reply
        async with running(bus, nats_settings, runner_settings()) as runner:
            dropped = runner.metrics.jobs.labels("drop")

            async def consumed() -> bool:
                return dropped._value.get() >= 1 and not await jobs(bus)

            await wait_until(consumed, within=30)
    finally:
        await orchestrator.close()
    entry = await kv.get(run_id)
    assert entry is not None
    stored = FlowRun.model_validate_json(entry.value)
    # The compare-and-set on the carried revision failed; the record read then is final.
    assert (stored.state.name, stored.runner_id, stored.run_count) == ("Cancelled", None, 0)
    assert entry.revision > (job.revision or 0)
