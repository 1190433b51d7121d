"""Runs made and carried out by the product, for tests of the parts that read them.

:func:`deploy_flows` deploys the flows of :data:`FLOWS` the way ``flowbus deploy``
does (the flow inspected, its code bundled and uploaded); :func:`live` starts the
orchestrator's real service (run requests become runs, automations act, the API's
cancel is answered) and, unless told not to, a runner in this process (``inline``
isolation: the tests using it are about what a run records, not about process
isolation). Results, parameters and final states are then the product's: a run
fails because its flow raised, it stays Running because its flow has not returned.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events.bus import Bus
from events.records import Deployment, FlowRun
from events.settings import NatsSettings
from flowbus.deploying import check_specs, register
from flowbus.entrypoints import FlowInfo
from flowbus.project import BuildConfig, DeploymentSpec, DeploySettings
from runners.service import Runner
from tests.automations.support import ManualClock, start
from tests.runners.runner_helpers import runner_settings, running, wait_state

FLOWS = '''
import time
from pathlib import Path

from flowbus import flow, get_run_logger


@flow
def greet(name: str = "world", times: int = 1) -> str:
    """Say hello; a negative count is an error, and the run fails."""
    if times < 0:
        raise ValueError(f"cannot greet {times} times")
    return f"Hello, {name}!" * times


@flow
def rows(day: str = "today", count: int = 3) -> list[int]:
    """The rows loaded on ``day``: 1 to ``count``."""
    return list(range(1, count + 1))


@flow
def flaky(counter: str, failures: int = 2) -> int:
    """Fail the first ``failures`` attempts (counted in the file ``counter``), then succeed."""
    path = Path(counter)
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


@flow
def hold(release: str) -> str:
    """Log a line, then run until the file ``release`` exists: a run that stays Running."""
    get_run_logger().info("holding")
    while not Path(release).exists():
        time.sleep(0.05)
    return "released"
'''


# The inspection of an entrypoint runs in a subprocess (seconds on a loaded machine) and
# FLOWS never changes: an entrypoint is inspected once per session for each set of
# parameter names and value types (a path differs from test to test, not its type).
_inspected: dict[str, FlowInfo] = {}


def _key(spec: DeploymentSpec) -> str:
    kinds = {name: type(value).__name__ for name, value in spec.parameters.items()}
    return json.dumps([spec.entrypoint, kinds], sort_keys=True)


async def deploy_flows(bus: Bus, root: Path, *specs: DeploymentSpec) -> dict[str, Deployment]:
    """Deploy ``specs`` (entrypoints into :data:`FLOWS`, as ``flows.py:greet``) from ``root``."""

    def write_and_check() -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "flows.py").write_text(textwrap.dedent(FLOWS))
        unknown = [spec for spec in specs if _key(spec) not in _inspected]
        for spec, info in zip(unknown, check_specs(root, unknown) if unknown else [], strict=True):
            _inspected[_key(spec)] = info

    await asyncio.to_thread(write_and_check)
    infos = [_inspected[_key(spec)] for spec in specs]
    outcome = await register(bus, root, list(specs), infos, BuildConfig(include=["*.py"]),
                             settings=DeploySettings(), source="tests")
    return {made.deployment.name: made.deployment for made in outcome.deployments}


def greet(name: str = "hello", **fields: Any) -> DeploymentSpec:
    return DeploymentSpec(name=name, entrypoint="flows.py:greet", **fields)


def hold(release: Path, name: str = "held", **fields: Any) -> DeploymentSpec:
    return DeploymentSpec(name=name, entrypoint="flows.py:hold",
                          parameters={"release": str(release)}, **fields)


def flows(entrypoint: str, name: str, **fields: Any) -> DeploymentSpec:
    """A deployment of the flow ``entrypoint`` names in :data:`FLOWS` (``flaky``, ``rows``...)."""
    return DeploymentSpec(name=name, entrypoint=f"flows.py:{entrypoint}", **fields)


@dataclass
class Live:
    """The orchestrator (with its clock, which only the test moves) and maybe a runner."""

    clock: ManualClock


@asynccontextmanager
async def live(bus: Bus, nats_settings: NatsSettings, *, runner: bool = True) -> AsyncIterator[Live]:
    """An orchestrator and (with ``runner``) an inline runner serving the default pool."""
    clock = ManualClock(datetime.now(UTC))
    async with AsyncExitStack() as stack:
        orchestrator = await start(bus, clock)
        stack.push_async_callback(orchestrator.close)
        if runner:
            await stack.enter_async_context(inline_runner(bus, nats_settings))
        yield Live(clock)


def inline_runner(bus: Bus, nats_settings: NatsSettings) -> AbstractAsyncContextManager[Runner]:
    """A runner of the default pool in this process, its runs in threads of this process."""
    return running(bus, nats_settings, runner_settings(limit=4, isolation="inline"))


async def wait_running(bus: Bus, run_id: str) -> FlowRun:
    """The run's record once its runner started the flow (generous: the machine is loaded)."""
    return await wait_state(bus, run_id, "Running", max_wait=60)


async def let_go(release: Path) -> None:
    """Let every ``hold`` flow waiting on ``release`` return."""
    await asyncio.to_thread(release.touch)
