"""A real gateway on loopback (auth on, scoped keys) over the test's NATS namespace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events.bus import Bus
from events.deployments import wait_flow_run
from events.records import FlowRun
from events.settings import NatsSettings
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings

ADMIN_KEY = "admin-key-for-the-security-tests-0123456789"

KeyMaker = Callable[..., Awaitable[aiohttp.ClientSession]]


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=ADMIN_KEY)) as gw:
        yield gw


@pytest.fixture
async def admin(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=gateway.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as session:
        yield session


@pytest.fixture
async def client_with(
    gateway: RunningGateway, admin: aiohttp.ClientSession
) -> AsyncIterator[KeyMaker]:
    """``await client_with("write")``: a session sending a new key holding those scopes."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(*scopes: str) -> aiohttp.ClientSession:
        async with admin.post("/api/v1/api-keys", json={"name": "k", "scopes": list(scopes)}) as r:
            body = await r.json()
            assert r.status == 201, body
        session = aiohttp.ClientSession(
            base_url=gateway.url, headers={"Authorization": f"Bearer {body['key']}"})
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    """The directory the runner takes code from (deployments without a bundle)."""
    root = tmp_path / "code"
    root.mkdir()
    return root


@pytest.fixture
async def plane(
    nats_settings: NatsSettings, code_root: Path
) -> AsyncIterator[None]:
    """An orchestrator and a runner (warm worker processes) serving this namespace."""
    from orchestrator.service import serve as serve_orchestrator
    from orchestrator.settings import OrchestratorSettings
    from runners.service import serve as serve_runner
    from runners.settings import RunnerSettings

    stop = asyncio.Event()
    ready = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(serve_orchestrator(
            nats_settings, OrchestratorSettings(fetch_wait_seconds=0.2), ready=ready[0], stop=stop)),
        asyncio.create_task(serve_runner(
            nats_settings, RunnerSettings(code_root=code_root, fetch_wait=0.2, limit=2),
            ready=ready[1], stop=stop)),
    ]
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(r.wait() for r in ready))
        yield
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks, return_exceptions=True)


async def wait_final(bus: Bus, run_id: str, max_wait: float = 60) -> FlowRun:
    """The run's record once final (generous bound: the machine may be loaded)."""
    run = await wait_flow_run(bus, run_id, max_wait)
    assert run is not None, f"no record for {run_id}"
    return run


async def poll(check: Callable[[], Awaitable[Any]], within: float = 30.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy (generous bound; the machine is loaded)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check} (last: {value!r})")
        await asyncio.sleep(0.05)
