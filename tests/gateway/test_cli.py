"""``flowbus gateway`` and the gateway inside ``flowbus dev``, as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from gateway_helpers import ADMIN_KEY

from events.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
EVENT = json.dumps({"specversion": "1.0", "id": "cli-1", "source": "/cli", "type": "a.b"}).encode()
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


async def flowbus(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    env = {**env, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from flowbus.cli import main; main()", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def read_until(stream: asyncio.StreamReader, marker: str) -> str:
    seen = []
    while True:
        line = (await asyncio.wait_for(stream.readline(), 60)).decode()
        if not line:
            raise AssertionError(f"no {marker!r} in output: {''.join(seen)}")
        seen.append(line)
        if marker in line:
            return line


async def test_gateway_command_serves_and_stops_on_sigterm(flowbus_env: dict[str, str]) -> None:
    env = {**flowbus_env, "FLOWBUS_GATEWAY_ADMIN_API_KEY": ADMIN_KEY}
    process = await flowbus(env, "gateway", "--port", "0")
    assert process.stdout is not None
    line = await read_until(process.stdout, "gateway listening on")
    url = line.rsplit(" ", 1)[1].strip()
    async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as s:
        async with s.post("/events", data=EVENT, headers=STRUCTURED) as r:
            assert r.status == 202
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_gateway_command_refuses_a_bad_port(flowbus_env: dict[str, str]) -> None:
    process = await flowbus(flowbus_env, "gateway", "--port", "70000")
    _, err = await process.communicate()
    assert process.returncode == 2 and b"70000" in err


async def test_gateway_command_refuses_an_unknown_setting(flowbus_env: dict[str, str]) -> None:
    process = await flowbus({**flowbus_env, "FLOWBUS_GATEWAY_PROT": "1"}, "gateway")
    _, err = await process.communicate()
    assert process.returncode == 2 and b"FLOWBUS_GATEWAY_PROT" in err


async def test_gateway_command_says_when_the_port_is_taken(flowbus_env: dict[str, str]) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    process = await flowbus(flowbus_env, "gateway", "--port", str(port))
    try:
        _, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:  # a failed test must not leave the gateway running
            process.kill()
            await process.wait()
        blocker.close()
        await blocker.wait_closed()
    assert process.returncode == 1 and b"cannot listen" in err and b"Traceback" not in err


async def test_dev_runs_the_gateway_without_auth_and_warns(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env["FLOWBUS_HOME"] = str(tmp_path / "home")
    process = await flowbus(env, "dev", "--nats-port", str(free_port()), "--gateway-port", "0",
                            "--data-dir", str(tmp_path / "dev"))
    assert process.stdout is not None and process.stderr is not None
    try:
        line = await read_until(process.stdout, "gateway ")
        url = line.split()[1]
        warning = await read_until(process.stderr, "WARNING")
        assert "auth is OFF" in warning
        async with aiohttp.ClientSession(base_url=url) as s:
            async with s.post("/events", data=EVENT, headers=STRUCTURED) as r:
                assert r.status == 202
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:  # a failed test must not leave flowbus dev running
            process.kill()
            await asyncio.wait_for(process.wait(), 10)


def worker_pids(pid: int) -> list[int]:
    """The gateway worker processes under ``pid`` (not multiprocessing's resource tracker)."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [p for p in children if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]


def any_alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{p}").exists() for p in pids)


async def start_workers(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str, list[int]]:
    process = await flowbus(env, "gateway", "--port", "0", "--workers", "2")
    assert process.stdout is not None
    line = await read_until(process.stdout, "gateway listening on")
    url = line.split("listening on ", 1)[1].split(" ", 1)[0]
    ready = 0
    deadline = time.monotonic() + 120  # both workers import and connect before they answer
    while ready < 10:
        assert time.monotonic() < deadline, "the gateway's workers did not both become ready"
        async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(force_close=True)) as s:
            try:
                async with s.get("/readyz") as r:
                    ready = ready + 1 if r.status == 200 else 0
            except aiohttp.ClientError:
                ready = 0
        await asyncio.sleep(0.05)
    workers = worker_pids(process.pid)
    assert len(workers) == 2
    return process, url, workers


async def test_gateway_workers_share_one_port_and_stop_together(flowbus_env: dict[str, str]) -> None:
    env = {**flowbus_env, "FLOWBUS_GATEWAY_ADMIN_API_KEY": ADMIN_KEY}
    process, url, workers = await start_workers(env)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with aiohttp.ClientSession(base_url=url, headers=headers,
                                     connector=aiohttp.TCPConnector(force_close=True)) as s:
        async def post(i: int) -> int:
            body = json.dumps({"specversion": "1.0", "id": f"w{i}", "source": "/w", "type": "a.b"})
            async with s.post("/events", data=body, headers=STRUCTURED) as r:
                return r.status

        assert set(await asyncio.gather(*(post(i) for i in range(40)))) == {202}
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    assert not any_alive(workers)


async def test_a_dead_worker_stops_the_others(flowbus_env: dict[str, str]) -> None:
    process, _, workers = await start_workers(flowbus_env)
    os.kill(workers[0], signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), 30) != 0
    assert not any_alive(workers)
