"""A job runs its flow: parameters from the record, result persisted, states recorded."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from datetime import timedelta

import cloudpickle
import pytest
from runner_helpers import (
    deploy,
    logs_of,
    runner_settings,
    running,
    schedule,
    wait_final,
    wait_state,
)

from events.bus import Bus
from events.deployments import read_result, request_cancel
from events.errors import NotFound
from events.logrecords import RunLogRecord
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


NOISY = """
import os, sys
from flowbus import flow, get_run_logger, task

@task
def inner() -> int:
    get_run_logger().warning("from the task")
    return 1

@flow
def noisy() -> int:
    print("plain print")
    sys.stderr.write("to stderr\\n")
    return inner() + os.getpid() * 0
"""


async def test_worker_stdout_and_stderr_become_run_logs_and_events_are_not_doubled(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "noisy", f"{flow_file(NOISY)}:noisy")
    async with running(bus, nats_settings, runner_settings(limit=1)):
        run_id = await schedule(bus, deployment)
        run = await wait_final(bus, run_id)
    assert run.state.name == "Completed"
    records = await logs_of(bus, run_id)
    logs = {(r["name"], r["level"], r["message"]) for r in records}
    assert ("flowbus.worker.stdout", logging.INFO, "plain print") in logs
    assert ("flowbus.worker.stderr", logging.WARNING, "to stderr") in logs
    assert ("flowbus.task_runs", logging.WARNING, "from the task") in logs
    # One record shape from every producer (events/logrecords.py): numeric levels.
    assert {type(r["level"]) for r in records} == {int}
    assert all(set(r) == set(RunLogRecord.__annotations__) for r in records)
    events = []
    async with asyncio.timeout(5):
        async for event in bus.tail("flowbus.*", since=run.created - timedelta(seconds=1)):
            events.append(event)
            if event.type == "flowbus.flow-run.Completed":
                break
    flow_events = [(e.type, e.source) for e in events if e.subject == f"flowbus.flow-run.{run_id}"]
    assert flow_events == [("flowbus.flow-run.Scheduled", "flowbus/orchestrator"),
                           ("flowbus.flow-run.Pending", "flowbus/runner"),
                           ("flowbus.flow-run.Running", "flowbus/runner"),
                           ("flowbus.flow-run.Completed", "flowbus/runner")]
    assert events[-1].data["deployment"] == "noisy"
    assert any(e.type == "flowbus.task-run.Completed" for e in events)


PID = """
import os
from flowbus import flow

@flow
def pid() -> int:
    return os.getpid()
"""


async def test_workers_are_recycled_after_their_run_limit(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "pid", f"{flow_file(PID)}:pid")
    settings = runner_settings(limit=1, worker_max_runs=2)
    async with running(bus, nats_settings, settings) as runner:
        pids = []
        for _ in range(3):
            run = await wait_final(bus, await schedule(bus, deployment))
            pids.append(await read_result(bus, run))
        assert runner.executor.restarts() == 0  # recycling is not a restart
    assert pids[0] == pids[1] != pids[2]


PICKLED = """
from flowbus import flow

class Point:
    def __init__(self, x): self.x = x

@flow(result_serializer="cloudpickle")
def point() -> object:
    return Point(3)

@flow
def unjsonable() -> object:
    return object()
"""


async def test_results_use_the_flows_serializer_or_are_skipped_when_unserializable(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    path = flow_file(PICKLED)
    pickled = await deploy(bus, "point", f"{path}:point")
    plain = await deploy(bus, "unjsonable", f"{path}:unjsonable")
    async with running(bus, nats_settings, runner_settings(limit=1, isolation="inline")):
        first = await wait_final(bus, await schedule(bus, pickled))
        second = await wait_final(bus, await schedule(bus, plain))
    store = await bus.objects(bus.layout.results)
    document = json.loads(await store.get(first.id))
    assert document["serializer"] == "cloudpickle"
    assert cloudpickle.loads(base64.b64decode(document["value"])).x == 3
    with pytest.raises(NotFound, match="cloudpickle"):
        await read_result(bus, first)
    assert second.state.name == "Completed" and second.result_ref is None
    assert any("the result was not persisted" in r["message"]
               for r in await logs_of(bus, second.id))


ASYNC_LONG = """
import asyncio
from flowbus import flow

@flow
async def wait_long() -> None:
    await asyncio.sleep(30)
"""


async def test_inline_async_run_is_cancelled(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "wait-long", f"{flow_file(ASYNC_LONG)}:wait_long")
    async with running(bus, nats_settings, runner_settings(limit=1, isolation="inline")):
        run_id = await schedule(bus, deployment)
        await wait_state(bus, run_id, "Running")
        await request_cancel(bus, run_id, source="tests")
        run = await wait_final(bus, run_id, max_wait=5)
    assert run.state.name == "Cancelled"
