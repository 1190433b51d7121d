"""Prefect's `PrefectTaskRunner`: submitted tasks become background task runs that a
task worker executes (as in Prefect 3.8.8, where they go to its task workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowbus import flow
from flowbus.background import TaskRunFuture
from flowbus.exceptions import ConfigurationError
from flowbus.task_runners import PrefectTaskRunner
from tests.background.helpers import task_worker


def test_submitted_and_mapped_tasks_run_on_a_task_worker(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    runner = PrefectTaskRunner()
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        runner.submit(bg_tasks.add, {"x": 1, "y": 2})
    assert isinstance(runner.duplicate(), PrefectTaskRunner) and runner.duplicate() is not runner
    with task_worker(tasks_root, worker_env, "bg_tasks:add"), runner:
        future = runner.submit(bg_tasks.add, {"x": 1, "y": 2})
        assert isinstance(future, TaskRunFuture)
        assert future.result(timeout=60) == 3
        mapped = runner.map(bg_tasks.add, {"x": [1, 2, 3], "y": 10})
        assert [f.result(timeout=60) for f in mapped] == [11, 12, 13]
        with pytest.raises(TypeError, match="parameters must be a dict"):
            runner.submit(bg_tasks.add, [1, 2])  # type: ignore[arg-type]


def test_it_is_not_a_flows_task_runner(tasks_root: Path, caller: None) -> None:
    import bg_tasks

    @flow(task_runner=PrefectTaskRunner())
    def pipeline() -> int:
        return bg_tasks.add.submit(1, 2).result()  # type: ignore[no-any-return]

    with pytest.raises(ConfigurationError, match="cannot run a flow's submitted task runs"):
        pipeline()
