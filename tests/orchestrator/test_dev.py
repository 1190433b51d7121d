"""`flowbus dev` runs the orchestrator: an event there creates a run, Ctrl-C stops cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.settings import NatsSettings
from tests.orchestrator.support import deploy, wait_for_runs, wait_until


async def _consuming(bus: Bus) -> bool:
    return any(c.name == "orchestrator" and (c.num_waiting or 0) > 0
               for c in await bus.consumers(bus.layout.events_stream))


def _url_in(log: Path) -> str | None:
    found = re.search(r"NATS JetStream\s+(nats://\S+)", log.read_text() if log.exists() else "")
    return found.group(1) if found else None


def _start_dev(env: dict[str, str], log: Path, data: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", "from flowbus.cli import main; main()", "dev", "--nats-port", "0",
             "--gateway-port", "0", "--data-dir", str(data)],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )


def _output(log: Path) -> str:
    return log.read_text()


async def _read_url(log: Path) -> str:
    deadline = time.monotonic() + 120  # a loaded machine starts nats-server and the parts slowly
    while time.monotonic() < deadline:
        url = _url_in(log)
        if url:
            return url
        await asyncio.sleep(0.05)
    raise AssertionError("flowbus dev did not start")


async def test_dev_runs_the_orchestrator(tmp_path: Path, flowbus_env: dict[str, str]) -> None:
    env = {k: v for k, v in flowbus_env.items() if k not in ("FLOWBUS_NATS_URL", "FLOWBUS_NAMESPACE")}
    env.update(PYTHONPATH=os.getcwd(), FLOWBUS_ORCHESTRATOR_FETCH_WAIT_SECONDS="0.1")
    log = tmp_path / "dev.log"
    proc = _start_dev(env, log, tmp_path / "data")
    try:
        url = await _read_url(log)
        async with await Bus.connect(NatsSettings(nats_url=[url])) as bus:
            await deploy(bus, triggers=[{"expect": ["dev.hello"]}])
            await wait_until(lambda: _consuming(bus), within=60)
            await asyncio.sleep(0.5)  # the orchestrator picks the deployment up
            await bus.publish(CloudEvent.create("dev.hello", source="t"))
            [run] = await wait_for_runs(bus, 1, within=60)
            assert run.deployment_name == "hello"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert "Traceback" not in _output(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
