"""``flowbus dev`` runs one runner for the 'default' pool."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from runner_helpers import deploy, schedule, wait_final, wait_state

from events.bus import Bus
from events.deployments import read_result
from events.settings import NatsSettings

ROOT = Path(__file__).resolve().parents[2]

DOUBLE = """
from flowbus import flow

@flow
def double(x: int) -> int:
    return 2 * x
"""


def _start_dev(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "flowbus.cli", "dev", "--nats-port", "0",
                             "--gateway-port", "0"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _read_until_ready(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "ready" in line:
            break
    return lines


async def test_dev_runs_flows_of_the_default_pool(
    tmp_path: Path, flow_file: Callable[[str], str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_HOME=str(tmp_path), PYTHONPATH=str(ROOT), FLOWBUS_RUNNER_LIMIT="2",
               FLOWBUS_RUNNER_FETCH_WAIT="0.2", FLOWBUS_RUNNER_CODE_ROOT=str(tmp_path))
    proc = _start_dev(env)
    try:
        lines = await asyncio.wait_for(asyncio.to_thread(_read_until_ready, proc), 30)
        assert any("runner           pool 'default', limit 2" in line for line in lines), lines
        url = next(line.split()[2] for line in lines if line.startswith("NATS JetStream"))
        async with await Bus.connect(NatsSettings(nats_url=[url])) as bus:
            deployment = await deploy(bus, "double", f"{flow_file(DOUBLE)}:double")
            run = await wait_final(bus, await schedule(bus, deployment, {"x": 21}))
            assert run.state.name == "Completed"
            assert await read_result(bus, run) == 42
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, rest


SLEEPY = """
import time
from flowbus import flow

@flow
def sleepy() -> None:
    time.sleep(120)
"""


async def test_a_second_ctrl_c_stops_dev_at_once(
    tmp_path: Path, flow_file: Callable[[str], str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_HOME=str(tmp_path), PYTHONPATH=str(ROOT), FLOWBUS_RUNNER_FETCH_WAIT="0.2")
    proc = _start_dev(env)
    try:
        lines = await asyncio.wait_for(asyncio.to_thread(_read_until_ready, proc), 30)
        url = next(line.split()[2] for line in lines if line.startswith("NATS JetStream"))
        assert (tmp_path / "dev" / "nats.url").read_text().strip() == url
        async with await Bus.connect(NatsSettings(nats_url=[url])) as bus:
            deployment = await deploy(bus, "sleepy", f"{flow_file(SLEEPY)}:sleepy")
            await wait_state(bus, await schedule(bus, deployment), "Running", max_wait=30)
        proc.send_signal(signal.SIGINT)  # drains: waits for the sleeping run
        assert proc.stdout is not None
        stopping = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        while "stopping" not in stopping:
            stopping = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, rest
    assert "second Ctrl-C: stopping now" in rest
    assert not (tmp_path / "dev" / "nats.url").exists()


@pytest.mark.parametrize("option", ["--nats-port", "--gateway-port", "--runner-metrics-port",
                                    "--orchestrator-metrics-port"])
def test_dev_refuses_a_taken_port_naming_the_option(tmp_path: Path, option: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env["FLOWBUS_HOME"] = str(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        ports = {"--nats-port": "0", "--gateway-port": "0", option: str(port)}
        args = [a for pair in ports.items() for a in pair]
        done = subprocess.run([sys.executable, "-m", "flowbus.cli", "dev", *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert f"choose another with {option}" in done.stderr
    assert "ready" not in done.stdout and not (tmp_path / "dev" / "nats.url").exists()
