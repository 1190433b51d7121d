"""Background task runs in the REST API, the command line and the gateway's metrics;
hostile requests get 4xx, never 5xx."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events.bus import Bus
from gateway.service import running
from gateway.settings import GatewaySettings
from tests.background.helpers import task_worker
from tests.cli_here import flowbus_here, invoke_here


async def test_task_runs_are_listed_and_read_through_the_api(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:add", "bg_tasks:fails"):
        ok = await asyncio.to_thread(bg_tasks.add.delay, 1, 2)
        bad = await asyncio.to_thread(bg_tasks.fails.delay)
        await asyncio.to_thread(ok.wait, 60)
        await asyncio.to_thread(bad.wait, 60)
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw, \
            aiohttp.ClientSession(base_url=gw.url) as http:
        async with http.get("/api/v1/task-runs") as response:
            page = await response.json()
        assert response.status == 200 and page["total"] == 2
        states = {item["id"]: item["state"]["name"] for item in page["items"]}
        assert states == {ok.task_run_id: "Completed", bad.task_run_id: "Failed"}
        async with http.get("/api/v1/task-runs", params={"state": "Failed"}) as response:
            assert [i["id"] for i in (await response.json())["items"]] == [bad.task_run_id]
        async with http.get("/api/v1/task-runs", params={"task": "add"}) as response:
            assert [i["id"] for i in (await response.json())["items"]] == [ok.task_run_id]
        async with http.get(f"/api/v1/task-runs/{ok.task_run_id}") as response:
            run = await response.json()
        # A small result travels in the record (base64 of the task's JSON encoding).
        assert run["parameters"] == {"x": 1, "y": 2} and run["result_key"] is None
        assert base64.b64decode(run["result_value"]) == b"3"
        async with http.get("/api/v1/task-runs/does-not-exist") as response:
            assert response.status == 404


@pytest.mark.parametrize("path", [
    "/api/v1/task-runs/..%2F..%2Fetc", "/api/v1/task-runs/" + "a" * 5000,
    "/api/v1/task-runs/%00", "/api/v1/task-runs/a*b", "/api/v1/task-runs?limit=0",
    "/api/v1/task-runs?limit=abc", "/api/v1/task-runs?state=Bogus",
    "/api/v1/task-runs?task=" + "x" * 600, "/api/v1/task-runs?unknown=1",
    "/api/v1/task-runs?offset=-1", "/api/v1/task-runs?limit=99999999999999999999999",
])
async def test_hostile_requests_get_a_client_error(bus: Bus, path: str) -> None:
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw, \
            aiohttp.ClientSession(base_url=gw.url) as http, http.get(path) as response:
        assert 400 <= response.status < 500, (path, response.status, await response.text())


async def test_queue_depth_and_oldest_age_are_metrics(
        tasks_root: Path, caller: None, bus: Bus) -> None:
    import bg_tasks

    for _ in range(3):  # no worker serves it: the runs wait
        await asyncio.to_thread(bg_tasks.fails.delay)
    await asyncio.sleep(0.2)
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw, \
            aiohttp.ClientSession(base_url=gw.url) as http:
        async with http.get("/api/v1/task-queue") as response:
            queue = await response.json()
        async with http.get("/metrics") as response:
            text = await response.text()
    assert queue["depth"] == 3 and queue["oldest_age_seconds"] >= 0.2
    metrics = dict(line.rsplit(" ", 1) for line in text.splitlines()
                   if line.startswith("flowbus_task_queue"))
    assert float(metrics["flowbus_task_queue_depth"]) == 3
    assert float(metrics["flowbus_task_queue_oldest_age_seconds"]) >= 0.2


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowbus.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_command_line_lists_and_inspects_task_runs(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:add"):
        future = bg_tasks.add.delay(2, 2)
        assert future.result(timeout=60) == 4
    listed = _cli(worker_env, "task-run", "ls", "--json")  # the program itself, once
    assert listed.returncode == 0, listed.stderr
    assert [(r["id"], r["state"]["name"]) for r in json.loads(listed.stdout)] == [
        (future.task_run_id, "Completed")]
    # The commands' answers; no process needed for them.
    table = invoke_here("task-run", "ls", "--state", "Completed", env=worker_env)
    assert future.task_run_id[:8] in table.stdout and "bg_tasks.add" in table.stdout
    inspected = invoke_here("task-run", "inspect", future.task_run_id, env=worker_env)
    assert base64.b64decode(json.loads(inspected.stdout)["result_value"]) == b"4"
    assert invoke_here("task-run", "inspect", "../../x", env=worker_env).returncode == 2
    missing = invoke_here("task-run", "inspect", "nope", env=worker_env)
    assert missing.returncode == 1 and "no task run 'nope'" in missing.stderr
    assert invoke_here("task-run", "ls", "--state", "Bogus", env=worker_env).returncode == 2


async def test_one_runs_logs_are_read_through_the_api_and_the_command_line(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:chatty"):
        first = await asyncio.to_thread(bg_tasks.chatty.delay, 1)
        second = await asyncio.to_thread(bg_tasks.chatty.delay, 2)
        assert await asyncio.to_thread(first.result, 60) == 1
        assert await asyncio.to_thread(second.result, 60) == 2
    wanted = ["chatty 1 says hello", "chatty 1 is done", "Finished in state Completed()"]
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw, \
            aiohttp.ClientSession(base_url=gw.url) as http:
        messages: list[str] = []
        for _ in range(100):  # the worker's sink sends its lines shortly after the run
            async with http.get(f"/api/v1/task-runs/{first.task_run_id}/logs") as response:
                assert response.status == 200, await response.text()
                items = (await response.json())["items"]
            messages = [i["message"] for i in items]
            if len(messages) >= 3:
                break
            await asyncio.sleep(0.1)
        assert messages == wanted  # this run's lines only, oldest first
        assert all(i["task_run_id"] == first.task_run_id for i in items)
        async with http.get(f"/api/v1/task-runs/{first.task_run_id}/logs",
                            params={"limit": "1"}) as response:
            assert [i["message"] for i in (await response.json())["items"]] == wanted[:1]
        async with http.get("/api/v1/task-runs/no-such-run/logs") as response:
            assert response.status == 404
    printed = await asyncio.to_thread(_cli, worker_env, "task-run", "logs", second.task_run_id)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert len(lines) == 3 and "INFO" in lines[0] and lines[0].endswith("chatty 2 says hello")
    assert "WARNING" in lines[1] and lines[1].endswith("chatty 2 is done")
    assert lines[2].endswith("Finished in state Completed()")
    for bad in ("../../x", "a.b", "*", ">", "a" * 100, ""):  # the command's answers
        refused = await flowbus_here("task-run", "logs", bad, env=worker_env)
        assert refused.returncode == 2 and "is not a task-run id" in refused.stderr, bad
    missing = await flowbus_here("task-run", "logs", "nope", env=worker_env)
    assert missing.returncode == 1 and "no task run 'nope'" in missing.stderr


@pytest.mark.parametrize("path", [
    "/api/v1/task-runs/..%2F..%2Fetc/logs", "/api/v1/task-runs/" + "a" * 5000 + "/logs",
    "/api/v1/task-runs/a.b/logs", "/api/v1/task-runs/a*b/logs", "/api/v1/task-runs/%3E/logs",
    "/api/v1/task-runs/x/logs?limit=0", "/api/v1/task-runs/x/logs?limit=abc",
    "/api/v1/task-runs/x/logs?limit=10001", "/api/v1/task-runs/x/logs?follow=true",
    "/api/v1/task-runs/x/logs?follow=maybe", "/api/v1/task-runs/x/logs?since=1",
])
async def test_hostile_log_requests_get_a_client_error(bus: Bus, path: str) -> None:
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw, \
            aiohttp.ClientSession(base_url=gw.url) as http, http.get(path) as response:
        assert 400 <= response.status < 500, (path, response.status, await response.text())


async def test_following_a_run_s_logs_prints_lines_as_they_come_and_ends_with_the_run(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    import bg_tasks

    wanted = ["w is waiting", "w was released", "Finished in state Completed()"]
    release = Path(worker_env["MARKS_DIR"]) / "w.go"
    with task_worker(tasks_root, worker_env, "bg_tasks:waits"):
        future = await asyncio.to_thread(bg_tasks.waits.delay, "w")
        async with running(bus, GatewaySettings(port=0, auth=False)) as gw, \
                aiohttp.ClientSession(base_url=gw.url) as http:
            url = f"/api/v1/task-runs/{future.task_run_id}/logs"
            async with http.get(url, params={"follow": "true"},
                                timeout=aiohttp.ClientTimeout(total=120)) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "application/x-ndjson"
                first = json.loads(await response.content.readline())
                # The run is still waiting: the line came while it ran, not after.
                assert first["message"] == wanted[0] and not release.exists()
                printing = asyncio.create_task(asyncio.to_thread(
                    _cli, worker_env, "task-run", "logs", future.task_run_id, "--follow"))
                try:
                    await asyncio.sleep(1)  # the command is following, not yet finished
                    assert not printing.done()
                finally:
                    release.touch()
                rest = [json.loads(line) async for line in response.content]
            assert [first["message"], *(r["message"] for r in rest)] == wanted
            printed = await asyncio.wait_for(printing, 120)
    assert printed.returncode == 0, printed.stderr
    assert [line.split(" - ", 1)[1] for line in printed.stdout.splitlines()] == wanted
    assert await asyncio.to_thread(future.result, 30) == "w"
