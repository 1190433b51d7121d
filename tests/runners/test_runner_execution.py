"""A job runs its flow: parameters from the record, result persisted, states recorded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from runner_helpers import deploy, logs_of, runner_settings, running, schedule, wait_final

from events.bus import Bus
from events.deployments import read_result
from events.settings import NatsSettings

ADD = """
from flowbus import flow

@flow(log_prints=True)
def add(x: int, y: int = 1) -> dict:
    print(f"adding {x} and {y}")
    return {"sum": x + y}
"""


@pytest.mark.parametrize("isolation", ["process", "inline"])
async def test_job_runs_flow_with_record_parameters_and_persists_result(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str], isolation: str
) -> None:
    deployment = await deploy(bus, "add", f"{flow_file(ADD)}:add", parameters={"y": 10})
    async with running(bus, nats_settings, runner_settings(isolation=isolation, limit=2)):
        run_id = await schedule(bus, deployment, {"x": 5})
        run = await wait_final(bus, run_id)
    assert run.state.name == "Completed", run.state.message
    assert run.run_count == 1 and run.start_time and run.end_time
    assert run.result_ref == run_id
    assert await read_result(bus, run) == {"sum": 15}
    messages = [r["message"] for r in await logs_of(bus, run_id)]
    assert "adding 5 and 10" in messages
