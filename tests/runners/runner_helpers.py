"""Helpers of the runner tests: doing what the orchestrator does, and running runners."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from events.bus import Bus
from events.deployments import save_deployment, wait_flow_run
from events.records import Deployment, FlowRun, utcnow
from events.settings import NatsSettings
from flowbus.deploying import check_specs, register
from flowbus.project import BuildConfig, DeploymentSpec, DeploySettings
from orchestrator.creation import RunCreator, RunRequest
from orchestrator.metrics import Metrics
from orchestrator.settings import OrchestratorSettings
from runners.service import Runner, make_executor
from runners.settings import RunnerSettings
from tests.shutdown import stop_service

ROOT = Path(__file__).resolve().parents[2]

# Runners in the test's process share its event loop, which a loaded machine stalls for
# a second at times: the worker lease (1.5 s, six heartbeats) outlasts such a stall, where
# the default of three heartbeats (0.75 s) made healthy workers stop themselves.
FAST = {"heartbeat_interval": 0.25, "worker_lease": 1.5, "ack_wait": 2.0, "fetch_wait": 0.2,
        "timeout_grace": 0.3, "drain_timeout": 2.0}


def runner_settings(**overrides: Any) -> RunnerSettings:
    return RunnerSettings(**{**FAST, **overrides})


async def deploy(bus: Bus, name: str, entrypoint: str, *, pool: str = "default",
                 parameters: dict[str, Any] | None = None) -> Deployment:
    stored, _ = await save_deployment(
        bus, Deployment(name=name, flow_name=name, entrypoint=entrypoint, work_pool=pool,
                        parameters=parameters or {}), source="tests")
    return stored


async def deploy_checked(bus: Bus, name: str, source: str, function: str, *, root: Path,
                         pool: str = "default", durable_tasks: bool = True) -> Deployment:
    """Deploy as ``flowbus deploy`` does: the flow inspected (retries read), its code bundled."""
    spec = DeploymentSpec(name=name, entrypoint=f"flows.py:{function}", work_pool=pool,
                          durable_tasks=durable_tasks)

    def write_and_check() -> list[Any]:
        root.mkdir(parents=True, exist_ok=True)
        (root / "flows.py").write_text(textwrap.dedent(source))
        return check_specs(root, [spec])

    infos = await asyncio.to_thread(write_and_check)
    outcome = await register(bus, root, [spec], infos, BuildConfig(include=["*.py"]),
                             settings=DeploySettings(), source="tests")
    return outcome.deployments[0].deployment


async def schedule(bus: Bus, deployment: Deployment, parameters: dict[str, Any] | None = None,
                   *, run_id: str | None = None) -> str:
    """Create the run and publish its job with the orchestrator's own run creation."""
    runs = await bus.kv(bus.layout.flow_runs)
    slots = await bus.kv(bus.layout.concurrency)
    creator = RunCreator(bus, runs, slots, OrchestratorSettings(), Metrics(), utcnow)
    run = await creator.create(RunRequest(
        flow_run_id=run_id or str(uuid.uuid4()), deployment=deployment, origin="tests",
        parameters={**deployment.parameters, **(parameters or {})},
        expected_start_time=utcnow(), idempotency_key=f"tests:{uuid.uuid4()}",
        name=f"run-{uuid.uuid4().hex[:6]}",
    ))
    return run.id


async def publish_job(bus: Bus, run_id: str, pool: str, deployment_id: str | None,
                      attempt: int = 1) -> None:
    body = json.dumps({"flow_run_id": run_id, "deployment_id": deployment_id, "attempt": attempt})
    await bus.publish_raw(bus.layout.runs_subject(pool), body.encode(),
                          {"Nats-Msg-Id": f"{run_id}:{attempt}"})


async def wait_final(bus: Bus, run_id: str, max_wait: float = 15) -> FlowRun:
    run = await wait_flow_run(bus, run_id, max_wait)
    assert run is not None, f"no record for {run_id}"
    assert run.state.is_final(), f"run {run_id} is still {run.state.name}"
    return run


async def wait_state(bus: Bus, run_id: str, name: str, max_wait: float = 10) -> FlowRun:
    kv = await bus.kv(bus.layout.flow_runs)
    async with asyncio.timeout(max_wait):
        async for change in kv.watch(run_id, include_history=True):
            if change.value is not None:
                run = FlowRun.model_validate_json(change.value)
                if run.state.name == name:
                    return run
    raise AssertionError("unreachable")


async def logs_of(bus: Bus, run_id: str) -> list[dict[str, Any]]:
    """Every log record published for a run so far."""
    sub = bus._js  # the tests read the logs stream directly
    records: list[dict[str, Any]] = []
    psub = await sub.pull_subscribe(bus.layout.logs_subject(run_id), stream=bus.layout.logs_stream)
    try:
        while True:
            try:
                msgs = await psub.fetch(100, timeout=0.5)
            except Exception:
                break
            for msg in msgs:
                records.extend(json.loads(msg.data))
                await msg.ack()
    finally:
        await psub.unsubscribe()
    return records


@asynccontextmanager
async def running(bus: Bus, nats_settings: NatsSettings, settings: RunnerSettings,
                  **kwargs: Any) -> AsyncIterator[Runner]:
    """A runner serving in this process until the block ends (then it drains)."""
    runner = Runner(bus, settings, make_executor(nats_settings, settings, kwargs.pop("flows", None)),
                    **kwargs)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({task, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield runner
    finally:
        await stop_service(stop, task, what="the runner")


async def wait_until(predicate: Callable[[], bool], max_wait: float = 10, step: float = 0.05) -> None:
    """Poll ``predicate`` (for what has no event to wait on, e.g. a file a flow writes)."""
    for _ in range(int(max_wait / step)):
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"gave up waiting after {max_wait}s")


class RunnerProcess:
    """``flowbus runner`` as a subprocess, its stderr in a file (a pipe could fill up)."""

    def __init__(self, env: dict[str, str], log: Path, cwd: Path = ROOT, **settings: str) -> None:
        env = {**env, **{f"FLOWBUS_RUNNER_{k.upper()}": v for k, v in settings.items()}}
        self.log = log
        with open(log, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flowbus.cli", "runner"],
                env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, stdout=subprocess.DEVNULL,
                stderr=err,
            )

    async def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            return "ready" in self.log.read_text()

        await wait_until(ready, 30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
