"""NATS with one user per part, as the Helm chart configures it (its ``auth.conf``, rendered
from events/permissions.py): the real gateway, orchestrator and runner processes run a
triggered flow to Completed and a run cancelled through the API (carried out by the
orchestrator) under their own users, and a part's user is refused what belongs to another
part."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest

from events.background import (
    TaskJob,
    TaskRunRecord,
    consumer_name,
    queue_task_run,
    scheduled_record,
)
from events.bus import Bus
from events.control import request_subject
from events.embedded import find_nats_server, free_port
from events.layout import Layout
from events.permissions import ROLES, Role, password_variable
from events.records import FlowRun
from events.settings import NatsSettings
from tests.helm.test_chart import render

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "admin-key-for-the-nats-permission-test-0123"
FLOW = """
import time

from flowbus import flow
from flowbus.flow_runs import pause_flow_run
from flowbus.input import RunInput


class Order(RunInput):
    quantity: int


@flow
def greet(name: str) -> str:
    return 'hi ' + name


@flow
def hold() -> None:
    time.sleep(300)


@flow
def ask() -> int:
    return pause_flow_run(wait_for_input=Order, timeout=300).quantity
"""
TASKS = "from flowbus import task\n\n@task\ndef double(x: int) -> int:\n    return 2 * x\n"
# A process that queues a background run (Task.delay) and waits for its result.
CALLER = ("from my_tasks import double\nfuture = double.delay(21)\n"
          "print(future.task_run_id, future.result(timeout=90), flush=True)\n")


@dataclass
class Server:
    url: str
    log: Path
    passwords: dict[Role, str]
    monitor: str

    def env(self, role: Role, namespace: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
        env.update({"FLOWBUS_NATS_URL": self.url, "FLOWBUS_NAMESPACE": namespace,
                    "FLOWBUS_NATS_USER": role, "FLOWBUS_NATS_PASSWORD": self.passwords[role],
                    "FLOWBUS_SECRETS_KEY": os.environ["FLOWBUS_SECRETS_KEY"],
                    "PYTHONPATH": str(ROOT)})
        return env

    def settings(self, role: Role, namespace: str) -> NatsSettings:
        return NatsSettings(nats_url=[self.url], namespace=namespace, nats_user=role,
                            nats_password=self.passwords[role], nats_request_timeout=3)

    def violations(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if " Violation - " in line]


def chart_auth_conf(namespace: str) -> str:
    """The bundled NATS's ``auth.conf`` as the chart renders it for ``namespace``."""
    [config] = [d for d in render({"flowbusNamespace": namespace})
                if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-nats")]
    return str(config["data"]["auth.conf"])


@pytest.fixture
def namespace() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


@pytest.fixture
def server(tmp_path: Path, namespace: str) -> Iterator[Server]:
    """nats-server with JetStream and the per-part users of ``namespace``, no anonymous access."""
    port, monitor = free_port(), free_port()
    # Letters and digits, starting with a letter: nats-server reads a value such as
    # "12-..." in its configuration as a date (the chart's passwords are letters and digits too).
    passwords: dict[Role, str] = {role: "p" + secrets.token_hex(20) for role in ROLES}
    (tmp_path / "auth.conf").write_text(chart_auth_conf(namespace))
    config = tmp_path / "nats.conf"
    config.write_text(
        f'host: "127.0.0.1"\nport: {port}\nhttp_port: {monitor}\nmax_payload: 8MB\n'
        f'jetstream {{\n  store_dir: "{tmp_path / "js"}"\n}}\n'
        'authorization {\n  include "auth.conf"\n}\n')
    log = tmp_path / "nats.log"
    env = {**os.environ, **{password_variable(r): p for r, p in passwords.items()}}
    with log.open("ab") as out:
        process = subprocess.Popen([find_nats_server(), "-c", str(config)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "Server is ready" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Server(f"nats://127.0.0.1:{port}", log, passwords, f"http://127.0.0.1:{monitor}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Parts:
    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, env: dict[str, str], marker: str, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flowbus.cli", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self.processes.append(process)
        assert process.stdout is not None
        seen = []
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 90)).decode()
            if not line:
                raise AssertionError(f"{args[0]} did not start: {''.join(seen)}")
            seen.append(line)
            if marker in line:
                asyncio.get_running_loop().create_task(_drain(process.stdout))
                return line

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    running = Parts()
    try:
        yield running
    finally:
        await running.stop()


async def _refused(server: Server, role: Role, subject: str, *, subscribe: bool = False) -> str:
    """Publish on (or subscribe to) ``subject`` as ``role``; the server's refusal (fails if
    there is none)."""
    errors: list[str] = []
    refused = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))
        refused.set()

    nc = await nats.connect(server.url, user=role, password=server.passwords[role],
                            error_cb=on_error, allow_reconnect=False)
    try:
        if subscribe:
            await nc.subscribe(subject)
        else:
            await nc.publish(subject, b'{"forged": true}')
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(refused.wait(), 10)
    finally:
        await nc.close()
    assert errors, f"{role} was allowed to {'subscribe to' if subscribe else 'publish on'} {subject}"
    assert "permissions violation" in errors[0].lower(), errors
    return errors[0]


async def test_each_part_runs_under_its_own_user_and_is_refused_the_others_work(
    server: Server, parts: Parts, namespace: str, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "flows.py").write_text(FLOW)
    # The orchestrator creates the layout (the gateway and runners may only read it).
    await parts.start(server.env("orchestrator", namespace), "orchestrator ready", "orchestrator")
    line = await parts.start({**server.env("gateway", namespace), "FLOWBUS_GATEWAY_ADMIN_API_KEY": ADMIN_KEY},
                             "gateway listening on", "gateway", "--port", "0")
    url = line.rsplit(" ", 1)[1].strip()
    await parts.start({**server.env("runner", namespace), "FLOWBUS_RUNNER_CODE_ROOT": str(code)},
                      "ready: pool", "runner", "--pool", "default", "--limit", "1")

    async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        async with api.post("/api/v1/deployments", json={
                "name": "greet", "flow_name": "greet", "entrypoint": "flows.py:greet",
                "triggers": [{"expect": ["com.example.order"],
                              "parameters": {"name": "{{ event.data.who }}"}}]}) as r:
            assert r.status == 201, await r.text()
        async with await Bus.connect(server.settings("admin", namespace), ensure=False) as admin:
            runs = await admin.kv(admin.layout.flow_runs)
            await asyncio.sleep(1.0)  # the orchestrator indexes the new trigger
            async with api.post("/events", json={
                    "specversion": "1.0", "id": "o-1", "source": "/shop", "type": "com.example.order",
                    "data": {"who": "ada"}}, headers={"Content-Type": "application/cloudevents+json"}) as r:
                assert r.status == 202, await r.text()
            run = await _wait_final(runs)
            assert run.state.name == "Completed", run.state
            # The gateway reads the run's logs (a log reader it deletes after).
            async with api.get(f"/api/v1/flow-runs/{run.id}/logs") as r:
                assert r.status == 200, await r.text()
            # Cancel through the API: the gateway asks, the orchestrator writes the record.
            held = await _cancelled_through_the_api(api, runs)
            assert held.state.name == "Cancelled", held.state
            # Delete the final run through the API: the orchestrator deletes the record.
            async with api.delete(f"/api/v1/flow-runs/{held.id}") as r:
                assert r.status == 204, await r.text()
            assert await runs.get(held.id) is None
            # Resume through the API: the runner saved the input schema, the orchestrator
            # checks the input, stores it and moves the run on.
            asked = await _resumed_through_the_api(api, runs)
            assert asked.state.name == "Completed", asked.state
            # The runner registered itself under its own user; the gateway reads it under its.
            async with api.get("/api/v1/runners") as r:
                assert r.status == 200, await r.text()
                assert [i["pool"] for i in (await r.json())["items"]] == ["default"]
            # The real parts did all that without one refusal.
            assert server.violations() == []

            # The gateway may not forge another part's control event, queue a run job, or
            # write records it does not own.
            layout = Layout(namespace)
            for subject in (f"{namespace}.events.flowbus.flow-run.Completed",
                            f"{namespace}.events.flowbus.flow-run.Cancelling",
                            f"{namespace}.events.flowbus.flow-run.Resumed",
                            f"$KV.{layout.flow_runs}.{run.id}",
                            f"$KV.{layout.run_input}.{run.id}.x",
                            f"{namespace}.events.flowbus.automation.action.failed",
                            f"{namespace}.events.flowbus.task-run.Completed",
                            f"{namespace}.runs.default",
                            f"$KV.{layout.attempts}.{run.id}",
                            f"$KV.{layout.trigger_state}.x",
                            f"$KV.{layout.automation_deliveries}.done.x",
                            f"$KV.{layout.runners}.forged",
                            f"$JS.API.STREAM.UPDATE.{layout.events_stream}",
                            f"$JS.API.STREAM.DELETE.{layout.flow_runs.upper()}"):
                await _refused(server, "gateway", subject)
            # A runner may not create or change a deployment, an automation or an API key.
            for subject in (f"$KV.{layout.deployments}.greet", f"$KV.{layout.deployments}.evil",
                            f"$KV.{layout.automations}.a", f"$KV.{layout.api_keys}.k",
                            f"$KV.{layout.webhooks}.w", request_subject(namespace)):
                await _refused(server, "runner", subject)
            # Each part receives only its own replies; the orchestrator answers only the
            # gateway's and the admin's requests.
            for role, subject in (("gateway", "_INBOX.>"), ("gateway", "_INBOX_orchestrator.>"),
                                  ("runner", "_INBOX_gateway.>"), ("task-worker", "_INBOX_runner.>"),
                                  ("orchestrator", "_INBOX_gateway.>")):
                await _refused(server, role, subject, subscribe=True)
            await _refused(server, "orchestrator", "_INBOX_runner.forged")
            # Only the orchestrator hears control requests.
            for role in ("gateway", "runner", "task-worker"):
                await _refused(server, role, request_subject(namespace), subscribe=True)
            # No part deletes another part's durable consumer (the orchestrator's on the
            # events stream, the runners' on the runs stream), nor its own.
            for role, stream, durable in (
                    ("gateway", layout.events_stream, "orchestrator"),
                    ("runner", layout.events_stream, "orchestrator"),
                    ("task-worker", layout.events_stream, "orchestrator"),
                    ("runner", layout.events_stream, "orchestrator-assets"),
                    ("gateway", layout.runs_stream, "pool-default"),
                    ("orchestrator", layout.runs_stream, "pool-default"),
                    ("runner", layout.runs_stream, "pool-default"),
                    ("orchestrator", layout.events_stream, "orchestrator")):
                await _refused(server, role, f"$JS.API.CONSUMER.DELETE.{stream}.{durable}")
            # Nor re-configures one: a create (or update) by name is allowed on its own
            # stream only (unnamed, ordered readers everywhere it reads).
            for role, stream, durable in (
                    ("gateway", layout.events_stream, "orchestrator"),
                    ("runner", layout.events_stream, "orchestrator"),
                    ("task-worker", layout.events_stream, "orchestrator"),
                    ("gateway", layout.runs_stream, "pool-default"),
                    ("orchestrator", layout.runs_stream, "pool-default"),
                    ("runner", layout.logs_stream, "reader"),
                    ("task-worker", f"KV_{layout.task_runs}", "watcher"),
                    ("runner", layout.tasks_stream, "tasks-x")):
                await _refused(server, role, f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}")
                await _refused(server, role, f"$JS.API.CONSUMER.CREATE.{stream}.{durable}")
            durables = {c.name for c in await admin.consumers(layout.events_stream)}
            assert {"orchestrator", "orchestrator-assets"} <= durables
            assert "pool-default" in {c.name for c in await admin.consumers(layout.runs_stream)}
            deployments = await admin.kv(layout.deployments)
            assert sorted(await deployments.keys()) == ["ask", "greet", "hold"]
            stored = json.loads((await deployments.get("greet")).value)  # type: ignore[union-attr]
            assert stored["entrypoint"] == "flows.py:greet"
            # Nothing forged reached the events stream.
            # Two runs completed for real (greet and the resumed ask); the runner announces
            # a final state after recording it: wait for both announcements.
            types = await _event_types(
                admin, until=lambda t: t.count("flowbus.flow-run.Completed") >= 2)
            assert "flowbus.task-run.Completed" not in types
            assert types.count("flowbus.flow-run.Completed") == 2, str(types)
            assert types.count("flowbus.flow-run.Cancelling") == 1  # the orchestrator's
    # The server logs each refusal: the empty list above was not a log that says nothing.
    assert len(server.violations()) >= 30


async def _cancelled_through_the_api(api: aiohttp.ClientSession, runs: Any) -> FlowRun:
    """Run ``hold``, cancel it through the API once Running; its record once final."""
    async with api.post("/api/v1/deployments", json={
            "name": "hold", "flow_name": "hold", "entrypoint": "flows.py:hold"}) as r:
        assert r.status == 201, await r.text()
    async with api.post("/api/v1/deployments/hold/runs", json={}) as r:
        assert r.status == 202, await r.text()
        run_id = (await r.json())["flow_run_id"]
    await _wait_state(runs, run_id, "Running")
    async with api.post(f"/api/v1/flow-runs/{run_id}/cancel") as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["state"]["name"] == "Cancelling"
    async with api.post(f"/api/v1/flow-runs/{run_id}/cancel") as r:
        assert r.status == 409, await r.text()  # already Cancelling: refused, not re-written
    return await _wait_state(runs, run_id, "Cancelled")


async def _resumed_through_the_api(api: aiohttp.ClientSession, runs: Any) -> FlowRun:
    """Run ``ask``, resume it through the API once Paused; its record once final."""
    async with api.post("/api/v1/deployments", json={
            "name": "ask", "flow_name": "ask", "entrypoint": "flows.py:ask"}) as r:
        assert r.status == 201, await r.text()
    async with api.post("/api/v1/deployments/ask/runs", json={}) as r:
        assert r.status == 202, await r.text()
        run_id = (await r.json())["flow_run_id"]
    await _wait_state(runs, run_id, "Paused")
    resume = f"/api/v1/flow-runs/{run_id}/resume"
    async with api.post(resume, json={"run_input": {"quantity": "many"}}) as r:
        assert r.status == 422 and "quantity" in await r.text()
    async with api.post(resume, json={"run_input": {"quantity": 3}}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["state"]["name"] == "Running"
    return await _wait_state(runs, run_id, "Completed")


async def _wait_state(runs: Any, run_id: str, state: str) -> FlowRun:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        entry = await runs.get(run_id)
        if entry is not None:
            run = FlowRun.model_validate_json(entry.value)
            if run.state.name == state:
                return run
        await asyncio.sleep(0.2)
    raise AssertionError(f"flow run {run_id} never reached {state}")


async def _wait_final(runs: Any) -> FlowRun:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for key in await runs.keys():
            entry = await runs.get(key)
            if entry is not None:
                run = FlowRun.model_validate_json(entry.value)
                if run.state.is_final():
                    return run
        await asyncio.sleep(0.2)
    raise AssertionError("no run reached a final state")


async def _event_types(bus: Bus, until: Callable[[list[str]], bool] | None = None,
                       within: float = 30.0) -> list[str]:
    """The types of the events in the stream; with ``until``, polled until it holds."""
    deadline = time.monotonic() + within
    while True:
        consumer = await bus.consumer(f"check-{uuid.uuid4().hex[:6]}")
        try:
            types = [d.event.type for d in await consumer.fetch(500, max_wait=0.5)]
        finally:
            await consumer.close()
        if until is None or until(types) or time.monotonic() > deadline:
            return types
        await asyncio.sleep(0.2)


async def test_a_task_worker_runs_a_delayed_task_under_its_own_user_and_nothing_else(
    server: Server, parts: Parts, namespace: str, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_tasks.py").write_text(TASKS)
    await parts.start(server.env("orchestrator", namespace), "orchestrator ready", "orchestrator")
    await parts.start(server.env("task-worker", namespace), "serving", "task-worker",
                      "my_tasks:double", "--root", str(code))
    line = await parts.start({**server.env("gateway", namespace), "FLOWBUS_GATEWAY_ADMIN_API_KEY": ADMIN_KEY},
                             "gateway listening on", "gateway", "--port", "0")
    url = line.rsplit(" ", 1)[1].strip()
    # A flow's process queues background runs under the runner's user.
    caller_env = {**server.env("runner", namespace), "PYTHONPATH": f"{ROOT}{os.pathsep}{code}",
                  "FLOWBUS_HOME": str(tmp_path / "home")}
    caller = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CALLER, env=caller_env, cwd=code,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    parts.processes.append(caller)
    output = (await asyncio.wait_for(caller.communicate(), 120))[0].decode()
    assert caller.returncode == 0, output
    run_id, result = output.split()[-2:]
    assert result == "42", output
    assert server.violations() == []

    layout = Layout(namespace)
    async with await Bus.connect(server.settings("admin", namespace), ensure=False) as admin:
        record = TaskRunRecord.decode((await (await admin.kv(layout.task_runs)).get(run_id)).value)  # type: ignore[union-attr]
        assert record.state.name == "Completed" and record.worker_id is not None
        types = await _event_types(admin, until=lambda t: "flowbus.task-run.Completed" in t)
        assert "flowbus.task-run.Completed" in types  # published by the worker, under its user
        # KEDA's JetStream scaler reads the task consumer's lag from the monitoring
        # endpoint, in the account the chart's users share ($G): auth does not hide it.
        async with aiohttp.ClientSession() as http, http.get(
                f"{server.monitor}/jsz", params={"acc": "$G", "consumers": "true", "config": "true"}) as r:
            jsz = await r.json()
        [account] = [a for a in jsz["account_details"] if a["name"] == "$G"]
        [stream] = [st for st in account["stream_detail"] if st["name"] == layout.tasks_stream]
        assert consumer_name(record.task_key) in [c["name"] for c in stream["consumer_detail"]]

        # The gateway's user reads the task runs and the queue (its first job included):
        # a job of a task no worker serves waits there.
        waiting = scheduled_record(task_run_id="waiting-1", name="w", task_key="nobody.serves",
                                   task_name="serves", tags=[], parameters=None, wait_for=[])
        await queue_task_run(admin, waiting, TaskJob(task_run_id="waiting-1", task_key="nobody.serves"))
        async with aiohttp.ClientSession(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
            async with api.get(f"/api/v1/task-runs/{run_id}") as r:
                assert r.status == 200 and (await r.json())["state"]["name"] == "Completed"
            async with api.get("/api/v1/task-runs") as r:
                assert r.status == 200, await r.text()
                listed = json.dumps(await r.json())
                assert run_id in listed and "waiting-1" in listed
            async with api.get("/api/v1/task-queue") as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["depth"] == 1
            # Its cancel is a control request: the orchestrator writes the record.
            async with api.post("/api/v1/task-runs/waiting-1/cancel") as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["state"]["name"] == "Cancelled"
            async with api.post("/api/v1/task-runs/waiting-1/cancel") as r:
                assert r.status == 409, await r.text()  # already final
        assert server.violations() == []
        # The gateway itself may not write task-run records.
        await _refused(server, "gateway", f"$KV.{layout.task_runs}.waiting-1")

        # The worker may not write a deployment or a flow run, forge a flow run's (or any
        # non-task) control event, queue a flow-run job, or read another part's bucket.
        for subject in (f"$KV.{layout.deployments}.evil", f"$KV.{layout.flow_runs}.x",
                        f"{namespace}.events.flowbus.flow-run.Completed",
                        f"{namespace}.events.flowbus.flow-run.Cancelling",
                        f"{namespace}.events.flowbus.deployment.run-requested",
                        f"{namespace}.runs.default",
                        f"$JS.API.DIRECT.GET.KV_{layout.blocks}.$KV.{layout.blocks}.x",
                        f"$JS.API.STREAM.UPDATE.{layout.tasks_stream}"):
            await _refused(server, "task-worker", subject)
        # No other part takes (and acknowledges away) a background task's job.
        for role in ("gateway", "runner", "orchestrator"):
            await _refused(server, role, f"$JS.API.CONSUMER.DURABLE.CREATE.{layout.tasks_stream}.steal")
        assert await (await admin.kv(layout.deployments)).keys() == []
        assert "flowbus.flow-run.Completed" not in await _event_types(admin)
    assert len(server.violations()) >= 11
