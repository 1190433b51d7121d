"""``serve(..., timeout=, status_server_port=)`` as Prefect 3.8.8 defines them: the worker
stops by itself after ``timeout`` seconds; a status server on loopback reports it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flowbus.exceptions import ConfigurationError
from tests.background.helpers import line_matching, stop

SERVE = """
import sys
from flowbus.task_worker import serve
import bg_tasks

serve(bg_tasks.marked, bg_tasks.add, status_server_port=0, timeout=float(sys.argv[1]))
print("serve returned", flush=True)
"""


def _start_serving(tasks_root: Path, worker_env: dict[str, Any], timeout: str) -> subprocess.Popen[str]:
    """``serve(..., status_server_port=0, timeout=...)`` in a process of its own."""
    (tasks_root / "serve_them.py").write_text(SERVE)
    with (tasks_root / "serve.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "serve_them.py", timeout], cwd=tasks_root,
            env={**worker_env, "PYTHONPATH": str(tasks_root)}, stdout=subprocess.PIPE,
            stderr=log, text=True, start_new_session=True)


def _wait_for_file(path: Path, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.05)


async def test_the_status_server_reports_a_running_worker(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    proc = await asyncio.to_thread(_start_serving, tasks_root, worker_env, "3600")
    try:
        line = await asyncio.to_thread(line_matching, proc, r"status server on http://127\.0\.0\.1:\d+")
        url = line.split(" on ", 1)[1].strip()
        await asyncio.to_thread(line_matching, proc, "serving")
        started = time.monotonic()
        async with aiohttp.ClientSession(base_url=url) as http:
            async with http.get("/health") as r:
                assert r.status == 200 and (await r.json()) == {"status": "ok"}
            future = await asyncio.to_thread(bg_tasks.marked.delay, 5, 2.0)
            marks = Path(worker_env["MARKS_DIR"])
            await asyncio.to_thread(_wait_for_file, marks / "5.start")
            async with http.get("/status") as r:
                status = await r.json()
            assert status["tasks"] == sorted([bg_tasks.marked.task_key, bg_tasks.add.task_key])
            assert status["limit"] == 10 and status["current"] == 1 and status["available"] == 9
            assert list(status["in_flight"][bg_tasks.marked.task_key]) == [future.task_run_id]
            assert status["stopping"] is False and status["started_at"]
            assert await asyncio.to_thread(future.result, 60) == 25
            async with http.get("/status") as r:
                status = await r.json()
            assert status["finished"] == {bg_tasks.marked.task_key: 1} and status["current"] == 0
            # Hostile requests: 4xx, never 5xx.
            async with http.get("/nope") as r:
                assert r.status == 404
            async with http.post("/status", data=b"x" * 10_000) as r:
                assert r.status == 405
            async with http.get("/status", headers={"X-Big": "a" * 100_000}) as r:
                assert 400 <= r.status < 500
            async with http.get("/status/../../etc/passwd") as r:
                assert r.status == 404
        assert time.monotonic() - started < 3600 and proc.poll() is None
    finally:
        stop(proc)


async def test_the_worker_stops_by_itself_after_its_timeout_and_serve_returns(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    started = time.monotonic()
    proc = await asyncio.to_thread(_start_serving, tasks_root, worker_env, "3")
    try:
        # No signal: the worker stops by itself once its timeout passed, and serve returns.
        await asyncio.to_thread(
            line_matching, proc, r"Task worker timed out after 3\.0 seconds\. Exiting", 120)
        await asyncio.to_thread(line_matching, proc, "serve returned", 60)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert time.monotonic() - started >= 3
    finally:
        stop(proc)


@pytest.mark.parametrize(("options", "message"), [
    ({"timeout": -1}, "timeout must be a number of seconds >= 0"),
    ({"timeout": "10"}, "timeout must be a number of seconds >= 0"),
    ({"timeout": float("nan")}, "timeout must be a number of seconds >= 0"),
    ({"status_server_port": 70000}, "status_server_port must be a port number"),
    ({"status_server_port": "8080"}, "status_server_port must be a port number"),
    ({"status_server_port": True}, "status_server_port must be a port number"),
])
def test_bad_options_are_refused_naming_them(
        tasks_root: Path, options: dict[str, Any], message: str) -> None:
    import bg_tasks

    from flowbus.task_worker import serve

    with pytest.raises(ConfigurationError, match=message):
        serve(bg_tasks.add, **options)
