"""With a server configured, run events and logs reach NATS as CloudEvents and log batches."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from events.bus import Bus
from events.errors import FlowbusError as EventsRoot
from flowbus import flow, get_run_logger, task
from flowbus._nats_sink import nats_event_sink
from flowbus._sink import get_event_sink, set_event_sink
from flowbus.exceptions import FlowbusError
from tests.stored import stored_types

ROOT = Path(__file__).resolve().parents[2]


def test_one_exception_root() -> None:
    assert FlowbusError is EventsRoot


async def test_flow_and_task_states_and_logs_are_published(bus: Bus) -> None:
    sink = nats_event_sink(bus.settings)
    assert sink is not None
    previous = set_event_sink(sink)

    @task
    def double(x: int) -> int:
        get_run_logger().info("doubling %s", x)
        return 2 * x

    @flow
    def pipeline(n: int) -> int:
        return double(n)

    try:
        state = pipeline(21, return_state=True)  # type: ignore[call-arg]
        sink.flush()
    finally:
        set_event_sink(previous)
        sink.close()
    assert await state.result() == 42  # awaitable in async code, as in Prefect

    types = await stored_types(bus)
    assert types.count("flowbus.flow-run.Running") == 1
    assert "flowbus.flow-run.Completed" in types and "flowbus.task-run.Completed" in types

    logs = await bus.consumer("logs", stream=bus.layout.logs_stream)
    records: list[dict[str, Any]] = []
    while batch := await logs.fetch(100, max_wait=2):  # one fetch may end at its first batch
        records += [r for d in batch for r in json.loads(d.data)]
    assert any(r["message"] == "doubling 21" and r["task_run_id"] for r in records)


def test_unreachable_nats_keeps_events_local() -> None:
    assert nats_event_sink("nats://127.0.0.1:1") is None
    assert get_event_sink() is not None


async def test_flowbus_nats_url_sends_a_plain_script_s_events_to_nats(
    bus: Bus, flowbus_env: dict[str, str]
) -> None:
    code = (
        "from flowbus import flow\n"
        "@flow\n"
        "def hello():\n"
        "    return 1\n"
        "hello()\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env={**flowbus_env, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    types = await stored_types(bus)
    assert types == ["flowbus.flow-run.Pending", "flowbus.flow-run.Running",
                     "flowbus.flow-run.Completed"]


async def test_published_states_and_the_buffer_show_as_metrics(bus: Bus) -> None:
    from prometheus_client import generate_latest

    from flowbus._sink_metrics import REGISTRY

    sink = nats_event_sink(bus.settings)
    assert sink is not None
    previous = set_event_sink(sink)

    @task
    def one() -> int:
        return 1

    @flow
    def counted() -> int:
        return one()

    try:
        counted()
        sink.flush()
        text = generate_latest(REGISTRY).decode()
    finally:
        set_event_sink(previous)
        sink.close()
    assert 'flowbus_sdk_task_runs_total{state="Completed"}' in text
    assert 'flowbus_sdk_flow_runs_total{state="Running"}' in text
    assert "flowbus_sdk_event_buffer_fill 0.0" in text
    assert "flowbus_sdk_event_backpressure_total 0.0" in text
