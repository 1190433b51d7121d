"""The run contract, built only by the code that really writes it.

A flow is deployed as ``flowbus deploy`` does (its retries read by inspection), a
run is asked for as the CLI and SDK do, the orchestrator creates it and publishes
its job, a runner executes it. Every record, job and event on the way must parse
with the typed models of ``events/`` (which refuse unknown keys), and carry the
retry settings and attempt data the takeover rules read.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from runner_helpers import deploy_checked, runner_settings, running, wait_final

from events.attempts import AttemptOutcome
from events.bus import Bus
from events.deployments import request_run
from events.records import FlowRun, StateData, utcnow
from events.runs import RUN_REQUESTED, FlowRunStateEvent, Job, RunRequested
from events.settings import NatsSettings
from tests.orchestrator.support import jobs, start

CONTRACT = """
from flowbus import flow

@flow(retries=2, retry_delay_seconds=[5, 30])
def contracted(x: int) -> int:
    return x * 2
"""


async def test_every_record_job_and_event_of_a_run_follows_the_typed_contract(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    since = utcnow() - timedelta(seconds=1)
    deployment = await deploy_checked(bus, "contract", CONTRACT, "contracted",
                                      root=tmp_path / "code")
    assert (deployment.retries, deployment.retry_delay_seconds) == (2, 5.0)
    orchestrator = await start(bus)
    try:
        run_id = await request_run(bus, "contract", {"x": 21}, source="tests/contract")
        for _ in range(200):
            published = [Job.model_validate(j) for j in await jobs(bus)]
            if published:
                break
            await asyncio.sleep(0.05)
        # The job carries the record as created, with the revision it is stored at.
        stored = await (await bus.kv(bus.layout.flow_runs)).get(run_id)
        assert stored is not None
        created = FlowRun.model_validate_json(stored.value)
        assert published == [Job(flow_run_id=run_id, deployment_id=deployment.id, attempt=1,
                                 revision=stored.revision, record=created)]
        async with running(bus, nats_settings, runner_settings()):
            run = await wait_final(bus, run_id, 30)
    finally:
        await orchestrator.close()
    assert run.state.name == "Completed", run.state.message
    assert (run.retries, run.retry_delay_seconds) == (2, 5.0)  # copied at creation
    assert (run.run_count, run.body_runs) == (1, 1)
    # The runner's stale period, for the orchestrator's check of a silent attempt.
    stale_after = runner_settings().stale_after
    assert run.state.data == StateData(attempt=1, body_started=True, stale_after=stale_after)

    kv = await bus.kv(bus.layout.attempts)
    entry = await kv.get(f"{run_id}.1")
    assert entry is not None
    outcome = AttemptOutcome.model_validate_json(entry.value)
    assert (outcome.kind, outcome.state_name, outcome.result_ref) == ("outcome", "Completed", run_id)

    seen: list[tuple[str, str]] = []
    requested: list[RunRequested] = []
    async with asyncio.timeout(10):
        async for event in bus.tail("flowbus.*", since=since):
            if event.type == RUN_REQUESTED:
                requested.append(RunRequested.model_validate(event.data))
            elif event.subject == f"flowbus.flow-run.{run_id}":
                data = FlowRunStateEvent.model_validate(event.data)
                assert data.deployment == "contract" and data.id == run_id
                seen.append((data.state.name, event.source))
                if data.state.name == "Completed":
                    break
    assert [r.flow_run_id for r in requested] == [run_id]
    assert seen == [("Scheduled", "flowbus/orchestrator"), ("Pending", "flowbus/runner"),
                    ("Running", "flowbus/runner"), ("Completed", "flowbus/runner")]
