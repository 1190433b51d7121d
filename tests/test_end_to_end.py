"""The README's main job, as a user runs it: `flowbus dev` with the example project,
a CloudEvent POSTed to the gateway, and the flow running with the event's data.

Real processes all the way: the `flowbus` command, its embedded NATS, gateway,
orchestrator and runner (warm worker processes, the project's code bundle).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.shutdown import stop_process

ROOT = Path(__file__).resolve().parent.parent
CLOUDEVENT = {"specversion": "1.0", "id": "e2e-1", "source": "/readme", "type": "com.example.hello",
              "data": {"name": "you"}}


@pytest.fixture
async def dev(tmp_path: Path) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env["FLOWBUS_HOME"] = str(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowbus.cli", "dev", "--nats-port", "0", "--gateway-port", "0",
        "--project", "examples/hello", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any("flowbus dev is ready" in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, "flowbus dev exited early:\n" + "".join(lines)
                lines.append(line)
        match = re.search(r"gateway +(http://\S+)", "".join(lines))
        assert match, "".join(lines)
        assert any("deployed         hello" in line for line in lines), "".join(lines)
        yield match.group(1), proc
    finally:
        await stop_process(proc, what="flowbus dev", sig=signal.SIGINT)


async def _completed_run(http: aiohttp.ClientSession, api: str, name: str) -> dict[str, object]:
    async with asyncio.timeout(45):
        while True:
            async with http.get(f"{api}/flow-runs", params={"deployment": "hello"}) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            items = body["items"] if isinstance(body, dict) else body
            for run in items:
                if run["parameters"].get("name") == name and run["state"]["name"] in (
                        "Completed", "Failed", "Crashed"):
                    return dict(run)
            await asyncio.sleep(0.2)


async def test_a_cloudevent_runs_the_example_flow(dev: tuple[str, asyncio.subprocess.Process]) -> None:
    gateway, proc = dev
    api = f"{gateway}/api/v1"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway}/events", json=CLOUDEVENT,
                             headers={"content-type": "application/cloudevents+json"}) as r:
            assert r.status == 202, await r.text()
        run = await _completed_run(http, api, "you")
        assert run["state"]["name"] == "Completed", run
        assert run["triggering_event"] is not None

        async with http.get(f"{api}/flow-runs/{run['id']}/logs") as r:
            logs = await r.text()
        assert "Hello, you!" in logs  # log_prints: the flow's print reached the run's logs

        # Serverless-style: ask for a run and wait for its result in one call.
        async with http.post(f"{api}/deployments/hello/runs", params={"wait": "30"},
                             json={"parameters": {"name": "e2e"}}) as r:
            assert r.status in (200, 201, 202), await r.text()
            outcome = await r.json()
        assert outcome["final"] and outcome["state"]["name"] == "Completed", outcome
        assert outcome["result"] == "Hello, e2e!"

        # The same event again (same source and id) is stored once and runs once.
        async with http.post(f"{gateway}/events", json=CLOUDEVENT,
                             headers={"content-type": "application/cloudevents+json"}) as r:
            assert r.status == 202
        await asyncio.sleep(1.0)
        async with http.get(f"{api}/flow-runs", params={"deployment": "hello"}) as r:
            body = await r.json()
        items = body["items"] if isinstance(body, dict) else body
        assert sum(1 for x in items if x["parameters"].get("name") == "you") == 1

    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert "flowbus dev stopped." in out.decode()
