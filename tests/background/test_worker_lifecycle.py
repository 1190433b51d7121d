"""A task worker drains on SIGTERM; `flowbus.task_worker.serve` works from a script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.background.helpers import stop, task_worker, wait_ready


def test_sigterm_lets_the_running_run_finish_then_exits(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    marks = Path(worker_env["MARKS_DIR"])
    with task_worker(tasks_root, worker_env, "bg_tasks:marked") as worker:
        future = bg_tasks.marked.delay(7, seconds=2.0)
        deadline = time.monotonic() + 60
        while not (marks / "7.start").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (marks / "7.start").exists()
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert future.result(timeout=30) == 49  # finished and recorded before the exit
    assert (marks / "7.end").read_text().split() == [str(worker.pid)]


SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from flowbus.task_worker import serve
from bg_tasks import add

serve(add, limit=2)
"""


def test_serve_runs_a_worker_from_python(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tasks_root)], env=worker_env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        wait_ready(proc)
        assert bg_tasks.add.delay(5, 6).result(timeout=60) == 11
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_serve_refuses_what_is_not_a_task() -> None:
    import pytest

    from flowbus.exceptions import ConfigurationError
    from flowbus.task_worker import serve

    with pytest.raises(ConfigurationError, match="takes @task objects"):
        serve(print)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="at least one"):
        serve()


def test_two_workers_with_one_task_each_serve_their_own(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], tmp_path: Path) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:add"), \
            task_worker(tasks_root, worker_env, "bg_tasks:flaky"):
        assert bg_tasks.add.delay(1, 1).result(timeout=60) == 2
        assert bg_tasks.flaky.delay(str(tmp_path / "n")).result(timeout=60) == "ok after 3"


def test_a_run_outlasting_the_drain_timeout_is_left_to_another_worker(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    marks = Path(worker_env["MARKS_DIR"])
    env = {**worker_env, "FLOWBUS_TASK_WORKER_DRAIN_TIMEOUT": "1"}
    with task_worker(tasks_root, env, "bg_tasks:marked") as worker:
        # Long enough to outlast the drain; the other worker's execution need not wait.
        future = bg_tasks.marked.delay(8, seconds=15.0, retaken_seconds=0.0)
        deadline = time.monotonic() + 60
        while not (marks / "8.start").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=30) == 1
        assert not (marks / "8.end").exists()  # it did not wait for the body
        assert future.state.name == "Running"
        with task_worker(tasks_root, worker_env, "bg_tasks:add", "bg_tasks:marked") as other:
            assert future.result(timeout=120) == 64  # taken over once the lease ran out
    assert (marks / "8.start").read_text().split() == [str(worker.pid), str(other.pid)]


def test_with_fewer_slots_than_tasks_an_idle_task_does_not_starve_a_busy_one(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    # One slot, three tasks: the loops of the two idle tasks must hand the slot on.
    with task_worker(tasks_root, worker_env, "bg_tasks:marked", "bg_tasks:fails",
                     "bg_tasks:add", extra=("--limit", "1")):
        time.sleep(1.0)  # the idle loops are fetching by now
        futures = [bg_tasks.add.delay(i, i) for i in range(5)]
        assert [f.result(timeout=60) for f in futures] == [0, 2, 4, 6, 8]
