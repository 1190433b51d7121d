"""flowbus deploy, deployment and flow-run commands against the test NATS."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.bus import Bus
from events.deployments import (
    get_deployment,
    request_cancel,
    request_run,
    save_deployment,
)
from events.logrecords import RunLogRecord, run_log_record
from events.records import Deployment
from events.settings import NatsSettings
from tests.created_runs import created_run
from tests.live_runs import deploy_flows, greet, hold, let_go, live, wait_running
from tests.runners.runner_helpers import wait_final, wait_state
from tests.stored import stored_events

from .conftest import Cli

ROOT = Path(__file__).resolve().parents[2]


def _flowbus(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "flowbus.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_deploy_registers_the_deployment_with_its_bundle(
    project: Path, flowbus_env: dict[str, str], bus: Bus
) -> None:
    done = await asyncio.to_thread(_flowbus, "deploy", env=flowbus_env, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "created deployment hello" in done.stdout and "uploaded" in done.stdout
    stored = await get_deployment(bus, "hello")
    assert stored.code_digest is not None and stored.code_digest.startswith("sha256:")
    assert (stored.flow_name, stored.entrypoint, stored.parameters) == ("greet", "flows.py:greet",
                                                                      {"name": "you"})
    assert stored.parameter_schema["properties"]["times"]["type"] == "integer"
    assert stored.triggers[0]["expect"] == ["com.example.hello"]
    store = await bus.objects(bus.layout.code)
    assert await store.names() == [stored.code_digest]

    again = await asyncio.to_thread(_flowbus, "deploy", "-f", str(project / "flowbus.yaml"),
                                    env=flowbus_env, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stdout and "updated deployment hello" in again.stdout
    assert (await get_deployment(bus, "hello")).id == stored.id


async def test_deploy_keeps_a_pause(project: Path, flowbus_cli: Cli, bus: Bus) -> None:
    assert (await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))).exit_code == 0
    assert (await flowbus_cli("deployment", "pause", "hello")).exit_code == 0
    assert (await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))).exit_code == 0
    assert (await get_deployment(bus, "hello")).paused


async def test_deploy_without_bundle_registers_no_code(project: Path, flowbus_cli: Cli, bus: Bus) -> None:
    text = (project / "flowbus.yaml").read_text()
    (project / "flowbus.yaml").write_text("build:\n  bundle: false\n" + text)
    result = await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))
    assert result.exit_code == 0, result.output
    assert (await get_deployment(bus, "hello")).code_digest is None
    assert await (await bus.objects(bus.layout.code)).names() == []


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("deployments: [", "not valid YAML"),
    ("deployments:\n  - name: hello\n    entrypoint: ../../etc/passwd:fn\n", "neither a .py file"),
    ("deployments:\n  - name: hello\n    entrypoint: ../../etc/evil.py:fn\n", "contains '..'"),
    ("deployments:\n  - name: hello\n    entrypoint: /etc/evil.py:fn\n", "is an absolute path"),
    ("deployments:\n  - name: hello\n    entrypoint: flows.py:greet\n    parameters: {nope: 1}\n",
     "'nope' are not in the flow's signature"),
    ("deployments:\n  - name: hello\n    entrypoint: missing.py:greet\n", "not found in the code root"),
    ("deployments:\n  - name: hello\n    entrypoint: flows.py:greet\n    colour: red\n",
     "field colour: unknown key"),
])
async def test_deploy_refuses_a_bad_project_and_registers_nothing(
    project: Path, flowbus_cli: Cli, bus: Bus, yaml_text: str, message: str
) -> None:
    (project / "flowbus.yaml").write_text(yaml_text)
    result = await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))
    assert result.exit_code == 1 and message in result.stderr
    kv = await bus.kv(bus.layout.deployments)
    assert await kv.keys() == []


async def test_deploy_of_an_unknown_name_is_refused(project: Path, flowbus_cli: Cli) -> None:
    result = await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"), "--name", "nope")
    assert result.exit_code == 1 and "no deployment named 'nope'" in result.stderr


async def test_deploy_refuses_an_oversized_bundle(
    project: Path, flowbus_cli: Cli, bus: Bus
) -> None:
    (project / "blob.bin").write_bytes(b"x" * 5000)
    flowbus_cli.env["FLOWBUS_BUNDLE_MAX_BYTES"] = "4000"
    result = await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))
    assert result.exit_code == 1 and "over the limit of 4000 bytes" in result.stderr
    assert await (await bus.kv(bus.layout.deployments)).keys() == []


async def _deploy(bus: Bus, name: str = "hello", **fields: object) -> Deployment:
    stored, _ = await save_deployment(bus, Deployment(name=name, flow_name="greet",
                                                      entrypoint="flows.py:greet", **fields))
    return stored


async def test_deployment_ls_and_inspect(flowbus_cli: Cli, bus: Bus) -> None:
    await _deploy(bus, "hello")
    await _deploy(bus, "other", work_pool="gpu")
    table = await flowbus_cli("deployment", "ls")
    assert table.exit_code == 0 and "hello" in table.stdout and "gpu" in table.stdout
    listed = json.loads((await flowbus_cli("deployment", "ls", "--json")).stdout)
    assert [d["name"] for d in listed] == ["hello", "other"]
    shown = await flowbus_cli("deployment", "inspect", "other")
    assert json.loads(shown.stdout)["work_pool"] == "gpu"


@pytest.mark.parametrize("command", ["inspect", "run", "pause", "resume", "delete"])
async def test_unknown_deployment_is_an_error(flowbus_cli: Cli, command: str) -> None:
    result = await flowbus_cli("deployment", command, "nope")
    assert result.exit_code == 1 and "deployment 'nope' not found" in result.stderr


async def test_run_publishes_the_request_with_parsed_parameters(
    flowbus_cli: Cli, bus: Bus, nats_settings: NatsSettings
) -> None:
    await _deploy(bus)  # no parameter schema: the orchestrator takes any parameters
    async with live(bus, nats_settings, runner=False):
        result = await flowbus_cli("deployment", "run", "hello", "-p", "name=you", "-p", "times=3",
                                   "-p", "raw=not json", "--param-json", '{"extra": [1], "times": 1}',
                                   "--tag", "manual")
        assert result.exit_code == 0, result.output
        [request] = await stored_events(bus, "flowbus.deployment.run-requested")
        parameters = {"name": "you", "times": 3, "raw": "not json", "extra": [1]}
        assert request.data["parameters"] == parameters
        assert request.data["tags"] == ["manual"] and request.source == "flowbus/cli"
        assert request.data["flow_run_id"] in result.stdout
        run = await wait_state(bus, request.data["flow_run_id"], "Scheduled", max_wait=30)
        assert run.parameters == parameters and "manual" in run.tags  # the orchestrator's record


async def test_run_with_one_idempotency_key_asks_once(flowbus_cli: Cli, bus: Bus) -> None:
    await _deploy(bus)
    first = await flowbus_cli("deployment", "run", "hello", "--idempotency-key", "k")
    second = await flowbus_cli("deployment", "run", "hello", "--idempotency-key", "k")
    assert first.stdout == second.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "novalue"], "'novalue' is not key=value"),
    (["-p", "=x"], "is not key=value"),
    (["--param-json", "{bad"], "not valid JSON"),
    (["--param-json", "[1]"], "must be a JSON object"),
    (["--timeout", "-1", "--watch"], "--timeout"),
])
async def test_run_refuses_bad_parameters(flowbus_cli: Cli, bus: Bus, args: list[str], message: str) -> None:
    await _deploy(bus)
    result = await flowbus_cli("deployment", "run", "hello", *args)
    assert result.exit_code == 2 and message in result.stderr


async def test_run_watch_prints_the_final_state_and_result(
    flowbus_cli: Cli, bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", greet("hello", parameters={"name": "you"}))
    async with live(bus, nats_settings):
        result = await flowbus_cli("deployment", "run", "hello", "-p", "times=2",
                                   "--watch", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "Completed" in result.stdout and 'result: "Hello, you!Hello, you!"' in result.stdout


async def test_run_watch_of_a_failed_run_exits_non_zero(
    flowbus_cli: Cli, bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", greet("hello"))
    async with live(bus, nats_settings):
        result = await flowbus_cli("deployment", "run", "hello", "-p", "times=-1",
                                   "--watch", "--timeout", "60")
    assert result.exit_code == 1 and "Failed" in result.stdout, result.output


async def test_run_watch_gives_up_after_its_timeout(flowbus_cli: Cli, bus: Bus) -> None:
    await _deploy(bus)
    result = await flowbus_cli("deployment", "run", "hello", "--watch", "--timeout", "0.3")
    assert result.exit_code == 3 and "not finished after 0.3s" in result.stderr


async def test_pause_resume_delete(flowbus_cli: Cli, bus: Bus) -> None:
    await _deploy(bus)
    assert (await flowbus_cli("deployment", "pause", "hello")).exit_code == 0
    assert (await get_deployment(bus, "hello")).paused
    assert (await flowbus_cli("deployment", "resume", "hello")).exit_code == 0
    assert not (await get_deployment(bus, "hello")).paused
    assert "deleted" in (await flowbus_cli("deployment", "delete", "hello")).stdout
    assert await (await bus.kv(bus.layout.deployments)).keys() == []


# --- flow runs ------------------------------------------------------------------------------


async def test_flow_run_ls_filters(flowbus_cli: Cli, bus: Bus) -> None:
    await created_run(bus, "r-1", deployment="hello")
    await created_run(bus, "r-2", deployment="hello", refused="parameters do not fit")
    await created_run(bus, "r-3", deployment="other")
    everything = json.loads((await flowbus_cli("flow-run", "ls", "--json")).stdout)
    assert {r["id"] for r in everything} == {"r-1", "r-2", "r-3"}
    waiting = await flowbus_cli("flow-run", "ls", "--deployment", "hello", "--state", "Scheduled", "--json")
    assert [r["id"] for r in json.loads(waiting.stdout)] == ["r-1"]
    table = await flowbus_cli("flow-run", "ls")
    assert "r-2" in table.stdout and "Failed" in table.stdout


async def test_flow_run_ls_refuses_an_unknown_state(flowbus_cli: Cli) -> None:
    result = await flowbus_cli("flow-run", "ls", "--state", "Sleeping")
    assert result.exit_code == 2 and "unknown state 'Sleeping'" in result.stderr


async def test_flow_run_inspect(flowbus_cli: Cli, bus: Bus) -> None:
    await created_run(bus, "r-1", deployment="hello")
    shown = await flowbus_cli("flow-run", "inspect", "r-1")
    assert json.loads(shown.stdout)["state"]["name"] == "Scheduled"


@pytest.mark.parametrize("command", ["inspect", "logs", "cancel"])
async def test_unknown_run_id_is_an_error(flowbus_cli: Cli, command: str) -> None:
    result = await flowbus_cli("flow-run", command, "absent")
    assert result.exit_code == 1 and "flow run 'absent' not found" in result.stderr


@pytest.mark.parametrize("command", ["inspect", "logs", "cancel"])
@pytest.mark.parametrize("run_id", ["a.b", "x*", ">", "has space", ""])
async def test_hostile_run_ids_are_refused(flowbus_cli: Cli, command: str, run_id: str) -> None:
    result = await flowbus_cli("flow-run", command, run_id)
    assert result.exit_code == 2 and "is not a flow-run id" in result.stderr


T_LOG = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _log(run_id: str, message: str) -> RunLogRecord:
    return run_log_record(flow_run_id=run_id, name="flowbus.flow_runs", level=logging.INFO,
                          message=message, timestamp=T_LOG)


async def test_flow_run_logs_prints_every_batch(flowbus_cli: Cli, bus: Bus) -> None:
    await created_run(bus, "r-1", deployment="hello")
    subject = bus.layout.logs_subject("r-1")
    await bus.publish_raw(subject, json.dumps([_log("r-1", "one"), _log("r-1", "two")]).encode())
    await bus.publish_raw(subject, b"not json at all")
    await bus.publish_raw(subject, json.dumps([_log("r-1", "three")]).encode())
    await bus.publish_raw(bus.layout.logs_subject("r-2"), json.dumps([_log("r-2", "other")]).encode())
    result = await flowbus_cli("flow-run", "logs", "r-1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.rsplit(" - ", 1)[1] for line in lines] == ["one", "two", "three"]
    assert lines[0].startswith("12:00:00.123 | INFO")
    consumers = await bus.consumers(bus.layout.logs_stream)
    assert consumers == []  # the reader cleans up after itself


async def test_flow_run_logs_follow_ends_with_the_run(flowbus_cli: Cli, bus: Bus) -> None:
    await created_run(bus, "r-1", deployment="hello")

    async def finish_later() -> None:
        await asyncio.sleep(0.5)
        await bus.publish_raw(bus.layout.logs_subject("r-1"), json.dumps([_log("r-1", "late")]).encode())
        await request_cancel(bus, "r-1")  # no runner holds it: Cancelled, a final state

    helper = asyncio.create_task(finish_later())
    result = await flowbus_cli("flow-run", "logs", "r-1", "--follow")
    await helper
    assert result.exit_code == 0 and "late" in result.stdout


async def test_flow_run_cancel(
    flowbus_cli: Cli, bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await created_run(bus, "waiting", deployment="hello")
    await created_run(bus, "done", deployment="hello", refused="parameters do not fit")
    assert "Cancelled" in (await flowbus_cli("flow-run", "cancel", "waiting")).stdout
    refused = await flowbus_cli("flow-run", "cancel", "done")
    assert refused.exit_code == 1 and "final state" in refused.stderr
    # A run its runner holds is Cancelling until the runner has stopped it.
    release = tmp_path / "release"
    await deploy_flows(bus, tmp_path / "code", hold(release, "held"))
    async with live(bus, nats_settings):
        try:
            running_id = await request_run(bus, "held", {}, source="tests")
            await wait_running(bus, running_id)
            assert "Cancelling" in (await flowbus_cli("flow-run", "cancel", running_id)).stdout
            assert (await wait_final(bus, running_id, max_wait=60)).state.name == "Cancelled"
        finally:
            await let_go(release)


async def test_deploy_settings_are_known_to_every_command(
    flowbus_env: dict[str, str], bus: Bus, tmp_path: Path
) -> None:
    # A fresh process: nothing imported beforehand registers the deploy settings.
    env = {**flowbus_env, "FLOWBUS_BUNDLE_MAX_BYTES": "1000"}
    done = await asyncio.to_thread(_flowbus, "deployment", "ls", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    env["FLOWBUS_BUNDLE_MAX_BYTS"] = "1000"
    done = await asyncio.to_thread(_flowbus, "deployment", "ls", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "did you mean FLOWBUS_BUNDLE_MAX_BYTES" in done.stderr


def test_the_example_project_is_valid() -> None:
    from flowbus.deploying import check_specs
    from flowbus.project import load_project

    example = ROOT / "examples" / "hello"
    project = load_project(example / "flowbus.yaml")
    [info] = check_specs(example, project.deployments)
    assert info.flow_name == "greet"
    assert project.deployments[0].triggers[0]["parameters"] == {"name": "{{ event.data.name }}"}


@pytest.mark.parametrize("command", ["inspect", "run", "pause", "resume", "delete"])
@pytest.mark.parametrize("name", ["a b", "a*", ">", "../x", "x" * 300, ""])
async def test_hostile_deployment_names_are_refused(flowbus_cli: Cli, command: str, name: str) -> None:
    result = await flowbus_cli("deployment", command, name)
    assert result.exit_code == 2 and "is not a deployment name" in result.stderr


async def test_run_with_oversized_parameters_is_refused(flowbus_cli: Cli, bus: Bus) -> None:
    await _deploy(bus)
    big = json.dumps({"blob": "x" * (2 * 1024 * 1024)})
    result = await flowbus_cli("deployment", "run", "hello", "--param-json", big)
    assert result.exit_code == 1 and "over the limit" in result.stderr


async def test_flow_run_logs_follow_stops_on_sigterm_and_cleans_up(
    flowbus_env: dict[str, str], bus: Bus, tmp_path: Path
) -> None:
    import signal

    await created_run(bus, "r-1", deployment="hello")  # Scheduled: not final, followed on
    env = {**flowbus_env, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowbus.cli", "flow-run", "logs", "r-1", "--follow",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        # A loaded machine takes seconds to start Python and import the command.
        for _ in range(1200):
            if await bus.consumers(bus.layout.logs_stream):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the command never started reading")
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr
    assert await bus.consumers(bus.layout.logs_stream) == []
