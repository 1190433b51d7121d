"""Resuming over the REST API and the command line, against hostile input.

A real paused run (a runner executing a flow that waits for input), a real gateway
on loopback, and the ``flowbus`` command line: malformed, oversized and wrongly
typed input, unknown and not-paused runs all get a clear 4xx or a non-zero exit,
never a 5xx; valid input resumes the run.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result
from runner_helpers import (
    deploy_checked,
    runner_settings,
    running,
    schedule,
    wait_final,
    wait_state,
)

from events.bus import Bus
from events.deployments import read_result
from events.settings import NatsSettings
from flowbus.cli import cli
from gateway.service import running as gateway_running
from gateway.settings import GatewaySettings
from tests.control_desk import control_desk

KEY = "pauses-admin-key-0123456789abcdef"
R = "/api/v1/flow-runs"

ASKING = """
from flowbus import flow
from flowbus.flow_runs import pause_flow_run
from flowbus.input import RunInput


class Order(RunInput):
    quantity: int
    rush: bool = False


@flow
def ask() -> str:
    order = pause_flow_run(wait_for_input=Order, timeout=300)
    return f"{order.quantity} rush={order.rush}"
"""


@dataclass
class Paused:
    run_id: str
    http: aiohttp.ClientSession


@pytest.fixture
async def paused(bus: Bus, nats_settings: NatsSettings, tmp_path: Path) -> AsyncIterator[Paused]:
    deployment = await deploy_checked(bus, "ask", ASKING, "ask", root=tmp_path / "code")
    # No runner fails here: a long worker lease keeps the paused run's worker on through
    # a stall of this process's event loop on a loaded machine (a 1.5 s lease crashed it).
    solo = runner_settings(limit=1, runner_id="solo", worker_lease=10.0, ack_wait=11.0)
    async with running(bus, nats_settings, solo), \
            gateway_running(bus, GatewaySettings(port=0, admin_api_key=KEY)) as gw, \
            control_desk(bus):
        run_id = await schedule(bus, deployment)
        await wait_state(bus, run_id, "Paused", 30)
        async with aiohttp.ClientSession(base_url=gw.url,
                                         headers={"Authorization": f"Bearer {KEY}"}) as http:
            yield Paused(run_id, http)


async def post(http: aiohttp.ClientSession, path: str, data: bytes | str,
               content_type: str = "application/json") -> tuple[int, dict[str, object]]:
    payload = io.BytesIO(data) if isinstance(data, bytes) else data
    async with http.post(path, data=payload, headers={"Content-Type": content_type}) as r:
        body = await r.json(content_type=None)
        assert r.status < 500, body
        return r.status, body


# Each refused body, the status it gets and a word the problem names.
BAD_RESUMES: list[tuple[bytes, int, str]] = [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "body"),
    (b'{"run_input": "seven"}', 400, "run_input"),
    (b'{"run_input": {"quantity": 1}, "extra": true}', 400, "extra"),
    (b'{"run_input": {"quantity": "many"}}', 422, "quantity"),
    (b'{"run_input": {"quantity": 1, "colour": "red"}}', 422, "colour"),
    (b'{"run_input": {}}', 422, "quantity"),
    (b"{}", 422, "quantity"),
    (b'{"run_input": ' + b'{"a": ' * 300 + b"1" + b"}" * 301, 400, "nest"),
    (b'{"run_input": {"quantity": 1, "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}}', 422, "pad"),
    # More than NATS carries to the orchestrator (8 MiB): refused at the gateway, naming the limit.
    (b'{"run_input": {"quantity": 1, "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}}', 422, "bytes"),
    (b'{"run_input": {"quantity": 1, "pad": "' + b"x" * (11 * 1024 * 1024) + b'"}}', 413, ""),
]


async def test_bad_resume_input_is_refused_and_the_run_stays_paused(
    paused: Paused, bus: Bus
) -> None:
    """Every bad body in turn against one paused run (pausing a run costs a runner, a
    gateway and a flow start): each is refused, and the run is still paused after it."""
    kv = await bus.kv(bus.layout.flow_runs)
    for n, (body, status, says) in enumerate(BAD_RESUMES):
        code, problem = await post(paused.http, f"{R}/{paused.run_id}/resume", body)
        assert code == status, (n, body[:60], problem)
        assert says.lower() in json.dumps(problem).lower(), (n, body[:60], problem)
        entry = await kv.get(paused.run_id)
        assert entry is not None and json.loads(entry.value)["state"]["name"] == "Paused", n


async def test_resume_unknown_or_not_paused_runs_and_then_a_valid_resume(
    paused: Paused, bus: Bus
) -> None:
    for run_id in ("no-such-run", "a.b.", "%3E"):
        code, _ = await post(paused.http, f"{R}/{run_id}/resume", b"{}")
        assert code == 404
    code, _ = await post(paused.http, f"{R}/{paused.run_id}/resume", b"{}", "text/plain")
    assert code == 415
    code, resumed = await post(paused.http, f"{R}/{paused.run_id}/resume",
                               b'{"run_input": {"quantity": 3, "rush": true}}')
    assert code == 200 and resumed["state"]["name"] == "Running"  # type: ignore[index]
    done = await wait_final(bus, paused.run_id, 30)
    assert await read_result(bus, done) == "3 rush=True"
    code, problem = await post(paused.http, f"{R}/{paused.run_id}/resume", b"{}")
    assert code == 409 and "Completed" in json.dumps(problem)


async def cli_resume(env: dict[str, str], *args: str) -> Result:
    runner = CliRunner()
    fb_env = {k: v for k, v in env.items() if k.startswith("FLOWBUS_")}
    return await asyncio.to_thread(runner.invoke, cli, ["flow-run", "resume", *args], env=fb_env,
                                   catch_exceptions=False)


async def test_cli_resume_refuses_bad_input_then_resumes(
    paused: Paused, bus: Bus, flowbus_env: dict[str, str]
) -> None:
    run_id = paused.run_id
    for bad, says in [("{oops", "not valid JSON"), ("[1]", "must be a JSON object"),
                      ('"x"', "must be a JSON object"), ("x" * 300_000, "at most"),
                      ('{"quantity": "lots"}', "quantity"), ('{"quantity": 1, "z": 0}', "z")]:
        result = await cli_resume(flowbus_env, run_id, "--input", bad)
        assert result.exit_code != 0 and says in result.output, result.output
        assert "Traceback" not in result.output
    result = await cli_resume(flowbus_env, "no-such-run-anywhere")
    assert result.exit_code != 0 and "not found" in result.output
    result = await cli_resume(flowbus_env, run_id[:8], "--input", '{"quantity": 2}')
    assert result.exit_code == 0, result.output
    assert f"flow run {run_id} resumed: Running" in result.output
    done = await wait_final(bus, run_id, 30)
    assert await read_result(bus, done) == "2 rush=False"
    result = await cli_resume(flowbus_env, run_id)
    assert result.exit_code != 0 and "not Paused or Suspended" in result.output
