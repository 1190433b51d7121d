"""Prefect's module paths that users import, beyond flows and tasks: settings,
with_context, logging handlers, event schemas, actions and automation classes."""

from __future__ import annotations

import concurrent.futures
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.context import with_context
from flowbus.logging import get_run_logger


def test_temporary_settings_change_and_restore(flowbus_home: Path) -> None:
    from flowbus.settings import (
        FLOWBUS_API_URL,
        FLOWBUS_LOGGING_LEVEL,
        PREFECT_HOME,
        get_current_settings,
        temporary_settings,
    )

    assert PREFECT_HOME.value() == flowbus_home and get_current_settings().home == flowbus_home
    assert os.environ.get("FLOWBUS_API_URL") is None
    with temporary_settings(updates={FLOWBUS_API_URL: "http://a/api/v1", "logging.level": "DEBUG"}) as now:
        assert now.api.url == "http://a/api/v1" and FLOWBUS_LOGGING_LEVEL.value() == "DEBUG"
        with temporary_settings(set_defaults={FLOWBUS_API_URL: "http://b"}, restore_defaults=["PREFECT_HOME"]):
            assert FLOWBUS_API_URL.value() == "http://a/api/v1"
            assert PREFECT_HOME.value() == Path.home() / ".flowbus"
        assert PREFECT_HOME.value() == flowbus_home
    assert FLOWBUS_API_URL.value() is None and FLOWBUS_LOGGING_LEVEL.value() == "INFO"
    with pytest.raises(ValueError, match="Unknown setting 'PREFECT_API_KEY'"):
        with temporary_settings(updates={"PREFECT_API_KEY": "x"}):
            pass


def _double_and_log(item: int) -> int:
    get_run_logger().info("processing %s", item)
    return item * 2


def test_with_context_carries_the_run_into_threads(sink: Any) -> None:
    @task
    def parallel(items: list[int]) -> list[int]:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            threads = list(pool.map(with_context(_double_and_log), items))
        with pytest.raises(Exception, match="no active flow or task run"), \
                concurrent.futures.ThreadPoolExecutor(1) as pool:  # fmt: skip
            pool.submit(_double_and_log, 1).result()  # without it, no run context there
        return threads

    @flow
    def pipeline() -> Any:
        return parallel([1, 2])

    assert pipeline() == [2, 4]
    task_logs = [r for r in sink.logs if r["message"].startswith("processing")]
    assert len(task_logs) == 2 and all(r["task_run_id"] for r in task_logs)


def test_with_context_in_a_process_logs_for_the_same_run(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    script = tmp_path / "job.py"
    script.write_text(
        "import concurrent.futures\n"
        "from flowbus import flow, task\n"
        "from flowbus.context import with_context\n"
        "from flowbus.logging import get_run_logger\n"
        "def work(x):\n"
        "    get_run_logger().info('in child %s', x)\n"
        "    return x + 1\n"
        "@task\n"
        "def fan(xs):\n"
        "    with concurrent.futures.ProcessPoolExecutor(2) as pool:\n"
        "        return list(pool.map(with_context(work), xs))\n"
        "@flow\n"
        "def main():\n"
        "    return fan([1, 2])\n"
        "if __name__ == '__main__':\n"
        "    assert main() == [2, 3]\n"
    )
    import json
    import subprocess
    import sys

    env = {**os.environ, "FLOWBUS_EVENTS_FILE": str(events), "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    child = [line for line in lines if "in child" in json.dumps(line)]
    assert len(child) == 2, lines[-5:]
    assert all("task_run_id" in json.dumps(line) for line in child)


def test_with_context_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        with_context(42)


def test_the_console_handler_writes_flowbus_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from flowbus.logging.handlers import APILogHandler, PrefectConsoleHandler

    logger = logging.getLogger("compat-handler-test")
    handler = PrefectConsoleHandler(level="INFO")
    logger.addHandler(handler)
    try:
        logger.warning("hello %s", "there")
        logger.debug("not shown")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "| WARNING | compat-handler-test - hello there" in err and "not shown" not in err
    assert isinstance(APILogHandler(), logging.Handler)


def test_event_schema_and_follows(sink: Any) -> None:
    from flowbus.events import Event, emit_event

    first = Event(event="my-app.order.placed", resource={"prefect.resource.id": "order/1"})
    sent = emit_event("my-app.order.shipped", resource={"prefect.resource.id": "order/1", "region": "eu"},
                      payload={"carrier": "dhl"}, follows=first)  # fmt: skip
    back = Event.from_cloudevent(sent)
    assert back.follows == first.id and back.payload == {"carrier": "dhl"}
    assert back.resource == {"flowbus.resource.id": "order/1", "region": "eu"} and back.resource_id == "order/1"
    with pytest.raises(ValueError, match=r"resource needs a 'flowbus\.resource\.id'"):
        Event(event="x", resource={"name": "no id"})
    with pytest.raises(ValueError, match="reserved"):
        emit_event("my-app.x", resource={"prefect.resource.id": "a"}, payload={"follows": 1})


def test_automation_takes_prefects_trigger_and_action_objects() -> None:
    from flowbus.automations import Automation
    from flowbus.events import DeploymentEventTrigger, Posture
    from flowbus.events.actions import CancelFlowRun
    from flowbus.events.schemas.automations import EventTrigger
    from flowbus.events.schemas.deployment_triggers import DeploymentEventTrigger as Same

    automation = Automation(
        name="woodchonk",
        trigger=EventTrigger(expect={"animal.walked"}, match={"genus": "Marmota"}, posture="Reactive", threshold=3),
        actions=[CancelFlowRun()],
    )
    assert automation.trigger.threshold == 3 and automation.trigger.posture is Posture.REACTIVE
    assert automation.actions[0].type == "cancel-flow-run"
    assert Same is DeploymentEventTrigger
    assert Posture.Proactive is Posture.PROACTIVE and Posture.Reactive is Posture.REACTIVE  # Prefect's names
    with pytest.raises(ValueError, match="threshold"):
        Automation(name="bad", trigger=EventTrigger(expect={"a.b"}, threshold=0), actions=[CancelFlowRun()])
