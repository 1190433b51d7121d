from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowbus import flow, get_run_context, get_run_logger, tags, task
from flowbus.artifacts import (
    Artifact,
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from flowbus.context import FlowRunContext, TaskRunContext
from flowbus.exceptions import MissingContextError
from flowbus.logging import disable_run_logger
from flowbus.runtime import deployment, flow_run, task_run
from flowbus.variables import Variable


def test_get_run_logger_outside_a_run_raises_a_clear_error() -> None:
    with pytest.raises(MissingContextError, match="only works inside a @flow or @task"):
        get_run_logger()


def test_disable_run_logger_gives_a_silent_logger_even_outside_a_run(sink) -> None:  # type: ignore[no-untyped-def]
    @task
    def t() -> None:
        get_run_logger().info("should not appear")

    with disable_run_logger():
        get_run_logger().info("outside")
        t.fn()
    assert sink.logs == []


def test_run_logger_names_the_run(caplog: pytest.LogCaptureFixture) -> None:
    @task(task_run_name="my-task-run")
    def t() -> None:
        get_run_logger().info("hello")

    logger = logging.getLogger("flowbus.task_runs")
    logger.addHandler(caplog.handler)
    try:
        t()
    finally:
        logger.removeHandler(caplog.handler)
    record = next(r for r in caplog.records if r.getMessage() == "hello")
    assert record.run_label == "Task run 'my-task-run'"  # type: ignore[attr-defined]


def test_get_run_context_inside_flow_and_task() -> None:
    @task
    def t() -> str:
        ctx = get_run_context()
        assert isinstance(ctx, TaskRunContext)
        return ctx.task_run.name

    @flow
    def f() -> tuple[str, str]:
        ctx = get_run_context()
        assert isinstance(ctx, FlowRunContext)
        return ctx.flow_run.flow_name, t()

    flow_name, task_run_name = f()
    assert flow_name == "f" and task_run_name.startswith("t-")
    with pytest.raises(MissingContextError):
        get_run_context()


def test_runtime_values_inside_and_outside_runs() -> None:
    assert flow_run.id is None and task_run.id is None and deployment.id is None
    assert flow_run.parameters == {}

    @task
    def t(x: int) -> dict[str, object]:
        return {"task_name": task_run.task_name, "params": task_run.parameters, "flow": flow_run.id}

    @flow
    def f(x: int) -> dict[str, object]:
        inner = t(x)
        return {
            **inner,
            "flow_id": flow_run.id,
            "flow_params": flow_run.parameters,
            "run_count": flow_run.run_count,
            "scheduled": flow_run.scheduled_start_time is not None,
        }

    out = f(5)
    assert out["task_name"] == "t" and out["params"] == {"x": 5}
    assert out["flow"] == out["flow_id"] and out["flow_params"] == {"x": 5}
    assert out["run_count"] == 1 and out["scheduled"] is True


def test_tags_context_manager_tags_runs_created_inside() -> None:
    @task
    def t() -> list[str]:
        return task_run.tags

    @flow
    def f() -> tuple[list[str], list[str]]:
        return flow_run.tags, t()

    with tags("a", "b"):
        with tags("c"):
            flow_tags, task_tags = f()
    assert flow_tags == ["a", "b", "c"] and task_tags == ["a", "b", "c"]
    assert f()[0] == []


def test_artifacts_are_stored_with_the_run_and_read_back_by_key(sink) -> None:  # type: ignore[no-untyped-def]
    @flow
    def f() -> str | None:
        create_markdown_artifact("# Hi", key="report", description="d")
        create_table_artifact([{"a": 1}, {"a": 2}], key="table")
        create_link_artifact("https://example.com", "site", key="link")
        create_image_artifact("https://example.com/x.png", key="img")
        progress = create_progress_artifact(10, key="progress")
        update_progress_artifact(progress, 75)
        return flow_run.id

    run_id = f()
    report = Artifact.get("report")
    assert report is not None
    assert (report.type, report.data, report.description, report.flow_run_id) == ("markdown", "# Hi", "d", run_id)
    assert Artifact.get("table").data == [{"a": 1}, {"a": 2}]  # type: ignore[union-attr]
    assert Artifact.get("link").data == "[site](https://example.com)"  # type: ignore[union-attr]
    assert Artifact.get("img").type == "image"  # type: ignore[union-attr]
    assert Artifact.get("progress").data == 75.0  # type: ignore[union-attr]
    assert Artifact.get("missing") is None
    assert any(e["type"] == "flowbus.artifact.updated" for e in sink.events)


def test_latest_artifact_with_a_key_wins_and_bad_input_is_rejected() -> None:
    create_markdown_artifact("v1", key="doc")
    create_markdown_artifact("v2", key="doc")
    assert Artifact.get("doc").data == "v2"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="key"):
        create_markdown_artifact("x", key="Bad Key")
    with pytest.raises(ValueError, match="between 0 and 100"):
        create_progress_artifact(150)


def test_variables_get_set_unset() -> None:
    assert Variable.get("threshold", default=5) == 5
    Variable.set("threshold", {"v": 10})
    assert Variable.get("threshold") == {"v": 10}
    with pytest.raises(ValueError, match="overwrite=True"):
        Variable.set("threshold", 1)
    Variable.set("threshold", 11, overwrite=True)
    assert Variable.get("threshold") == 11
    assert Variable.unset("threshold") is True
    assert Variable.unset("threshold") is False
    with pytest.raises(ValueError, match="invalid"):
        Variable.set("Bad Name", 1)


async def test_variables_async() -> None:
    await Variable.aset("answer", 42)
    assert await Variable.aget("answer") == 42
    assert await Variable.aunset("answer") is True
    assert await Variable.aget("answer", "gone") == "gone"


def test_get_logger_gives_a_flowbus_logger_usable_outside_runs() -> None:
    from flowbus.logging import get_logger

    assert get_logger().name == "flowbus"
    assert get_logger("etl").name == "flowbus.etl"


def test_a_task_called_outside_any_flow_prints_its_logs(tmp_path: Path) -> None:
    script = tmp_path / "lone_task.py"
    script.write_text(
        "from flowbus import get_run_logger, task\n"
        "@task(task_run_name='lone')\n"
        "def t() -> None:\n"
        "    get_run_logger().info('hello from a lone task')\n"
        "t()\n"
    )
    env = {**os.environ, "FLOWBUS_HOME": str(tmp_path / "home")}
    env.pop("FLOWBUS_LOGGING_LEVEL", None)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Task run 'lone' - hello from a lone task" in done.stderr
