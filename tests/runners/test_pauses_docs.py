"""The examples of docs/sdk.md, "Pausing, suspending and input", run as written on a
real runner: the flow files are deployed, the resume command and call executed."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from runner_helpers import (
    ROOT,
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

SECTION = (ROOT / "docs" / "sdk.md").read_text().split("## Pausing, suspending and input")[1]
SECTION = SECTION.split("\n## ")[0]
PYTHON = re.findall(r"```python\n(.*?)```", SECTION, re.S)
BASH = re.findall(r"```bash\n(.*?)```", SECTION, re.S)


def example(first_line: str) -> str:
    [found] = [block for block in PYTHON if block.startswith(first_line)]
    return found


@pytest.fixture
def sdk_server(nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's SDK talks to the test's server (as a script with FLOWBUS_NATS_URL)."""
    from flowbus import _remote

    monkeypatch.setenv("FLOWBUS_NATS_URL", ",".join(nats_settings.nats_url))
    monkeypatch.setenv("FLOWBUS_NAMESPACE", nats_settings.namespace)
    _remote.reset()
    yield
    _remote.reset()


async def test_the_suspend_example_resumes_from_the_documented_command(
    bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    deployment = await deploy_checked(bus, "release", example("# approvals.py"), "release",
                                      root=tmp_path / "code")
    [command] = [line for line in BASH[0].splitlines() if line.startswith("flowbus flow-run resume")]
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="docs")):
        run_id = await schedule(bus, deployment)
        await wait_state(bus, run_id, "Suspended", 30)
        args = shlex.split(command.replace("<ID>", run_id))[1:]
        env = {k: v for k, v in flowbus_env.items() if k.startswith("FLOWBUS_")}
        result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env,
                                         catch_exceptions=False)
        assert result.exit_code == 0, result.output
        done = await wait_final(bus, run_id, 60)
    assert await read_result(bus, done) == "v1.2.3 shipped, approved by ada"
    assert done.run_count == 2


async def test_the_pause_example_resumes_through_resume_flow_run(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path, sdk_server: None
) -> None:
    deployment = await deploy_checked(bus, "count-boxes", example("# pausing.py"), "count_boxes",
                                      root=tmp_path / "code")
    [resume] = [block for block in PYTHON if "resume_flow_run(flow_run_id" in block]
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="docs")):
        run_id = await schedule(bus, deployment)
        await wait_state(bus, run_id, "Paused", 30)
        await asyncio.to_thread(exec, resume, {"flow_run_id": run_id})
        done = await wait_final(bus, run_id, 30)
    assert done.run_count == 1 and await read_result(bus, done) == 42


async def test_the_input_example_passes_values_between_two_runs(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    source = example("# greetings.py")
    listener = await deploy_checked(bus, "listener", source, "listener", root=tmp_path / "a")
    greeter = await deploy_checked(bus, "greeter", source, "greeter", root=tmp_path / "b")
    async with running(bus, nats_settings, runner_settings(limit=2, runner_id="docs")):
        listening = await schedule(bus, listener, {"expected": 2})
        await wait_state(bus, listening, "Running", 30)
        greeting = await schedule(bus, greeter, {"listener_run_id": listening,
                                                 "names": ["ada", "grace"]})
        sent = await wait_final(bus, greeting, 30)
        heard = await wait_final(bus, listening, 60)
    assert await read_result(bus, sent) == 2
    assert await read_result(bus, heard) == ["ada", "grace"]
