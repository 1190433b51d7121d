from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import flowbus
from flowbus import _sink, flow, task
from flowbus._sink import BufferedSink, JsonLinesSink, NullSink, get_event_sink, set_event_sink
from flowbus.logging import get_run_logger


def test_state_changes_are_cloudevents_with_the_full_run_record(sink) -> None:  # type: ignore[no-untyped-def]
    @task(tags=["t1"])
    def child(x: int) -> int:
        return x

    @flow(flow_run_name="run-{n}")
    def parent(n: int) -> int:
        return child(n)

    parent(3)
    assert sink.state_names("flow-run") == ["Pending", "Running", "Completed"]
    assert sink.state_names("task-run") == ["Pending", "Running", "Completed"]
    flow_done = next(e for e in sink.events if e["type"] == "flowbus.flow-run.Completed")
    task_done = next(e for e in sink.events if e["type"] == "flowbus.task-run.Completed")
    assert flow_done["source"] == "flowbus/sdk"
    assert flow_done["specversion"] == "1.0"
    assert flow_done["subject"] == f"flowbus.flow-run.{flow_done['data']['id']}"
    assert flow_done["time"].endswith("+00:00")
    data = flow_done["data"]
    assert (data["name"], data["flow_name"], data["parameters"]) == ("run-3", "parent", {"n": 3})
    assert data["state"]["type"] == "COMPLETED" and data["state"]["name"] == "Completed"
    assert data["run_count"] == 1 and data["deployment_id"] is None
    assert task_done["data"]["flow_run_id"] == data["id"]
    assert task_done["data"]["tags"] == ["t1"]
    assert task_done["subject"] == f"flowbus.task-run.{task_done['data']['id']}"
    json.dumps(sink.events)  # JSON-safe all the way down


def test_parameters_that_are_not_json_are_rendered_safely(sink) -> None:  # type: ignore[no-untyped-def]
    @flow(validate_parameters=False)
    def f(obj: object) -> None:
        pass

    f(object())
    assert sink.events[0]["data"]["parameters"]["obj"].startswith("<object object")


def test_failed_and_cached_states_are_emitted(sink) -> None:  # type: ignore[no-untyped-def]
    from flowbus.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def cached(x: int) -> int:
        return x

    @task
    def broken() -> None:
        raise RuntimeError

    cached(1)
    cached(1)
    broken(return_state=True)
    assert sorted(map(tuple, sink.runs("task-run").values())) == [
        ("Pending", "Cached"),
        ("Pending", "Running", "Completed"),
        ("Pending", "Running", "Failed"),
    ]


def test_log_records_carry_run_ids(sink) -> None:  # type: ignore[no-untyped-def]
    @task
    def t() -> None:
        get_run_logger().warning("from task")

    @flow
    def f() -> None:
        get_run_logger().info("from flow")
        t()

    f()
    by_message = {r["message"]: r for r in sink.logs}
    flow_rec, task_rec = by_message["from flow"], by_message["from task"]
    assert set(flow_rec) == {"flow_run_id", "task_run_id", "name", "level", "message", "timestamp"}
    assert flow_rec["task_run_id"] is None and flow_rec["level"] == 20
    assert task_rec["flow_run_id"] == flow_rec["flow_run_id"] and task_rec["task_run_id"]


def test_null_sink_is_the_default_and_disables_event_building() -> None:
    previous = set_event_sink(None)
    try:
        assert isinstance(get_event_sink(), NullSink)
        assert _sink.enabled is False
    finally:
        set_event_sink(previous)


def test_buffered_sink_publishes_in_batches_off_the_calling_thread() -> None:
    batches: list[list[dict[str, Any]]] = []
    threads = set()

    def publish(batch: list[dict[str, Any]]) -> None:
        threads.add(threading.get_ident())
        batches.append(batch)

    sink = BufferedSink(publish, maxsize=1000)
    for i in range(100):
        sink.emit_event({"i": i})
    sink.emit_log({"message": "m"})
    sink.flush()
    events = [e for b in batches for e in b]
    assert [e["i"] for e in events if "i" in e] == list(range(100))
    assert {"message": "m"} in events
    assert threading.get_ident() not in threads
    assert len(batches) < 101  # batched, not one call per event
    sink.close()


def test_buffered_sink_applies_backpressure_when_full_and_stays_bounded() -> None:
    gate = threading.Event()
    published: list[dict[str, Any]] = []

    def slow_publish(batch: list[dict[str, Any]]) -> None:
        gate.wait(5)
        published.extend(batch)

    sink = BufferedSink(slow_publish, maxsize=3, batch_size=1)
    producer = threading.Thread(target=lambda: [sink.emit_event({"i": i}) for i in range(10)])
    producer.start()
    time.sleep(0.2)
    assert producer.is_alive()  # blocked: the buffer is full
    assert sink.fill <= 3
    assert sink.backpressure_count >= 1
    gate.set()
    producer.join(5)
    sink.close()
    assert [e["i"] for e in published] == list(range(10))


def test_buffered_sink_survives_a_failing_publisher(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(batch: list[dict[str, Any]]) -> None:
        raise ConnectionError("down")

    sink = BufferedSink(broken, maxsize=10)
    sink.emit_event({"a": 1})
    sink.flush()
    sink.emit_event({"a": 2})
    sink.close()
    assert sink.error_count == 2
    assert "event publish failed" in capsys.readouterr().err


def test_flow_runs_through_a_buffered_sink_and_flushes_at_the_end() -> None:
    got: list[dict[str, Any]] = []
    sink = BufferedSink(got.extend, maxsize=4)
    previous = set_event_sink(sink)
    try:

        @task
        def t(i: int) -> int:
            return i

        @flow
        def f() -> None:
            for i in range(20):
                t(i)

        f()
        # flushed by the flow's end, before it returned
        assert sum(1 for e in got if e.get("type", "").startswith("flowbus.task-run.")) == 60
    finally:
        set_event_sink(previous)
        sink.close()


def test_json_lines_sink_writes_events_and_logs(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(path)
    sink.emit_event({"type": "x"})
    sink.emit_log({"message": "y"})
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"type": "x"}, {"log": {"message": "y"}}]


def test_events_file_from_the_environment(tmp_path: Path, flowbus_home: Path) -> None:
    path = tmp_path / "events.jsonl"
    code = (
        "from flowbus import flow\n"
        "@flow\n"
        "def hello():\n"
        "    return 1\n"
        "hello()\n"
    )
    env = {
        **os.environ,
        "FLOWBUS_HOME": str(flowbus_home),
        "FLOWBUS_EVENTS_FILE": str(path),
        "PYTHONPATH": str(Path(flowbus.__file__).parent.parent),
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30, capture_output=True)
    types = [json.loads(line).get("type") for line in path.read_text().splitlines()]
    assert [t for t in types if t] == [
        "flowbus.flow-run.Pending", "flowbus.flow-run.Running", "flowbus.flow-run.Completed",
    ]  # fmt: skip


def test_a_failed_task_logs_its_traceback_to_the_sink(sink) -> None:  # type: ignore[no-untyped-def]
    @task
    def broken() -> None:
        raise ZeroDivisionError("division trouble")

    broken(return_state=True)
    (record,) = [r for r in sink.logs if r["message"].startswith("Task run failed with exception")]
    assert record["level"] == 40
    assert "Traceback (most recent call last)" in record["message"]
    assert "ZeroDivisionError: division trouble" in record["message"]


def test_big_parameters_are_bounded_in_events(sink) -> None:  # type: ignore[no-untyped-def]
    class Big:
        def __repr__(self) -> str:
            return "x" * 10_000

    @task
    def t(items: list[int], big: object) -> None:
        pass

    t(list(range(5000)), Big())
    params = sink.events[0]["data"]["parameters"]
    assert len(params["items"]) == 1001 and params["items"][-1] == "... 4000 more"
    assert len(params["big"]) == 1003
