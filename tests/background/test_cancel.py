"""Cancelling background task runs (API, command line, future): a queued run never
starts, a running one is stopped by its worker; final runs are 409; hostile ids 4xx."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events.bus import Bus
from flowbus.background import read_record
from flowbus.exceptions import CancelledRun
from gateway.service import running
from gateway.settings import GatewaySettings
from tests.background.helpers import task_worker
from tests.control_desk import control_desk
from tests.fetching import fetch_stored


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowbus.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _wait_for(check: Any, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


async def test_a_queued_run_cancelled_through_the_api_never_starts(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    import bg_tasks

    marks = Path(worker_env["MARKS_DIR"])
    queued = await asyncio.to_thread(bg_tasks.marked.delay, 1)  # no worker yet: it waits
    # The orchestrator's control desk carries out the API's cancel (the gateway asks).
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw, control_desk(bus), \
            aiohttp.ClientSession(base_url=gw.url) as http:
        async with http.post(f"/api/v1/task-runs/{queued.task_run_id}/cancel") as response:
            body = await response.json()
        assert response.status == 200, body
        assert body["state"]["name"] == "Cancelled" and body["end_time"] is not None
        async with http.post(f"/api/v1/task-runs/{queued.task_run_id}/cancel") as response:
            again = await response.json()
        assert response.status == 409 and "already Cancelled" in again["detail"]
        async with http.post("/api/v1/task-runs/no-such-run/cancel") as response:
            assert response.status == 404
    with task_worker(tasks_root, worker_env, "bg_tasks:marked"):
        later = await asyncio.to_thread(bg_tasks.marked.delay, 2)
        assert await asyncio.to_thread(later.result, 60) == 4  # the queue went past it
    assert not (marks / "1.start").exists()
    assert queued.state.name == "Cancelled"
    with pytest.raises(CancelledRun, match="cancelled through the API"):
        queued.result()
    # No engine ever ran it: the cancel itself announced the run's end, once.
    consumer = await bus.consumer("queued-cancel-check")
    try:
        deliveries = await fetch_stored(consumer)
    finally:
        await consumer.close()
    mine = [d.event for d in deliveries if d.event.subject == f"flowbus.task-run.{queued.task_run_id}"]
    assert [e.type for e in mine] == ["flowbus.task-run.Cancelled"], mine
    assert mine[0].data["state"]["name"] == "Cancelled" and mine[0].data["run_count"] == 0
    assert mine[0].data["task_name"] == "marked" and mine[0].data["id"] == queued.task_run_id


def _cancel_a_running_run(tasks_root: Path, worker_env: dict[str, Any]) -> str:
    import bg_tasks

    marks = Path(worker_env["MARKS_DIR"])
    with task_worker(tasks_root, worker_env, "bg_tasks:spins", "bg_tasks:add",
                     extra=("--limit", "1")):
        future = bg_tasks.spins.delay(7, 30.0)
        _wait_for(lambda: (marks / "7.start").exists())
        cancelled = _cli(worker_env, "task-run", "cancel", future.task_run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"task run {future.task_run_id} is Cancelled" in cancelled.stdout
        # With --limit 1, the next run can only start once the worker stopped the body.
        after = bg_tasks.add.delay(1, 1)
        assert after.result(timeout=60) == 2
        with pytest.raises(CancelledRun):
            future.result(timeout=30)
        ticks = (marks / "7.ticks").stat().st_size
        time.sleep(1.0)
        # The body was stopped (not merely abandoned): it ticks no more, never ended.
        assert (marks / "7.ticks").stat().st_size == ticks
        assert not (marks / "7.end").exists()
        record = read_record(future.task_run_id)
        assert record is not None and record.state.name == "Cancelled" and record.run_count == 1
        # A final run cannot be cancelled again.
        final = _cli(worker_env, "task-run", "cancel", after.task_run_id)
        assert final.returncode == 1 and "already Completed" in final.stderr
    return future.task_run_id


async def test_a_running_run_cancelled_from_the_command_line_is_stopped_by_its_worker(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    run_id = await asyncio.to_thread(_cancel_a_running_run, tasks_root, worker_env)
    # The worker's engine announced the end of the run as for any task run.
    consumer = await bus.consumer("cancel-check")
    try:
        deliveries = await fetch_stored(consumer)
    finally:
        await consumer.close()
    types = [d.event.type for d in deliveries if d.event.subject == f"flowbus.task-run.{run_id}"]
    assert types[-1] == "flowbus.task-run.Cancelled", types


def test_a_body_stuck_in_c_code_is_abandoned_and_the_future_cancels(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    marks = Path(worker_env["MARKS_DIR"])
    with task_worker(tasks_root, worker_env, "bg_tasks:marked", "bg_tasks:add",
                     extra=("--limit", "1")):
        stuck = bg_tasks.marked.delay(3, 120.0)  # one time.sleep: cannot be interrupted
        _wait_for(lambda: (marks / "3.start").exists())
        assert stuck.cancel() is True
        assert stuck.cancel() is False  # already final
        after = bg_tasks.add.delay(2, 3)
        assert after.result(timeout=60) == 5  # the slot came back after the grace period
        assert stuck.state.name == "Cancelled"
    logs = "".join(p.read_text() for p in tasks_root.glob("worker-*.log"))
    assert "did not stop within 5 s of the cancel" in logs


def test_the_command_line_refuses_bad_ids(worker_env: dict[str, Any]) -> None:
    for bad in ("../../x", "a" * 100, "a b", "*", ""):
        result = _cli(worker_env, "task-run", "cancel", bad)
        assert result.returncode == 2, (bad, result.stderr)
        assert "is not a task-run id" in result.stderr
    missing = _cli(worker_env, "task-run", "cancel", "nope")
    assert missing.returncode == 1 and "no task run 'nope'" in missing.stderr


@pytest.mark.parametrize("path", [
    "/api/v1/task-runs/..%2F..%2Fetc/cancel", "/api/v1/task-runs/" + "a" * 5000 + "/cancel",
    "/api/v1/task-runs/%00/cancel", "/api/v1/task-runs/a*b/cancel", "/api/v1/task-runs/a.b/cancel",
    "/api/v1/task-runs/%2E/cancel", "/api/v1/task-runs/x/cancel?unknown=1",
])
async def test_hostile_cancels_get_a_client_error(bus: Bus, path: str) -> None:
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw, \
            aiohttp.ClientSession(base_url=gw.url) as http:
        async with http.post(path, data=b"x" * 100_000) as response:
            assert 400 <= response.status < 500, (path, response.status, await response.text())


def test_the_api_and_the_pages_know_every_task_run_state() -> None:
    from typing import get_args

    from events.background import TASK_RUN_STATES
    from gateway.api.task_runs import TaskRunStateName
    from gateway.ui import catalog_view

    assert set(get_args(TaskRunStateName)) == set(TASK_RUN_STATES)
    assert "Cancelled" in catalog_view.TASK_RUN_STATES


async def test_a_run_cancelled_while_waiting_for_its_upstream_is_announced_by_its_worker(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    import bg_tasks

    marks = Path(worker_env["MARKS_DIR"])
    with task_worker(tasks_root, worker_env, "bg_tasks:marked"):
        upstream = await asyncio.to_thread(bg_tasks.add.delay, 1, 1)  # nobody serves `add`
        waiting = await asyncio.to_thread(bg_tasks.marked.apply_async, (9,), None, [upstream])
        def is_running() -> bool:
            record = read_record(waiting.task_run_id)
            return record is not None and record.state.name == "Running"

        await asyncio.to_thread(_wait_for, is_running)
        assert await asyncio.to_thread(waiting.cancel) is True
        consumer = await bus.consumer("waiting-cancel-check")
        try:
            seen: list[Any] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not seen:
                for d in await consumer.fetch(1000, max_wait=1.0):
                    if d.event.subject == f"flowbus.task-run.{waiting.task_run_id}":
                        seen.append(d.event)
        finally:
            await consumer.close()
        assert [e.type for e in seen] == ["flowbus.task-run.Cancelled"], seen
        assert seen[0].data["run_count"] == 1
    assert not (marks / "9.start").exists()  # its body never ran
    with pytest.raises(CancelledRun):
        await asyncio.to_thread(waiting.result, 5)
