"""Helpers for orchestrator tests: deployments, an in-process orchestrator, a clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from events.bus import Bus
from events.records import Deployment, FlowRun
from orchestrator.service import Orchestrator
from orchestrator.settings import OrchestratorSettings


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def deploy(bus: Bus, name: str = "hello", **fields: Any) -> Deployment:
    deployment = Deployment(name=name, flow_name=fields.pop("flow_name", "hello-flow"), **fields)
    kv = await bus.kv(bus.layout.deployments)
    await kv.put(name, deployment.model_dump_json().encode())
    return deployment


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def flow_runs(bus: Bus) -> list[FlowRun]:
    kv = await bus.kv(bus.layout.flow_runs)
    runs = []
    for key in await kv.keys():
        entry = await kv.get(key)
        if entry is not None:
            runs.append(FlowRun.model_validate_json(entry.value))
    return runs


async def jobs(bus: Bus) -> list[dict[str, Any]]:
    """Every job message waiting in the runs stream (read, not consumed)."""
    js = bus._js
    info = await js.stream_info(bus.layout.runs_stream)
    out = []
    first, last = info.state.first_seq, info.state.last_seq
    for seq in range(first, last + 1) if info.state.messages else ():
        try:
            msg = await js.get_msg(bus.layout.runs_stream, seq)
        except Exception:
            continue
        out.append(json.loads(msg.data or b"{}"))
    return out


async def wait_for_runs(bus: Bus, count: int, within: float = 10.0) -> list[FlowRun]:
    async def enough() -> bool:
        return len(await flow_runs(bus)) >= count

    await wait_until(enough, within)
    return await flow_runs(bus)


def fast_settings(**overrides: Any) -> OrchestratorSettings:
    values: dict[str, Any] = {"fetch_wait_seconds": 0.1, "tick_seconds": 3600, "drain_seconds": 2}
    values.update(overrides)
    return OrchestratorSettings(**values)


class Running:
    """An orchestrator running in this event loop."""

    def __init__(self, orch: Orchestrator, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.orch = orch
        self.stop = stop
        self.task = task

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


async def start(bus: Bus, settings: OrchestratorSettings | None = None,
                clock: ManualClock | None = None, identity: str | None = None) -> Running:
    orch = Orchestrator(bus, settings or fast_settings(), clock=clock or ManualClock(datetime.now(UTC)),
                        identity=identity)
    stop = asyncio.Event()
    task = asyncio.create_task(orch.run(stop))
    waiter = asyncio.ensure_future(orch.consuming.wait())
    await asyncio.wait({waiter, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    waiter.cancel()
    return Running(orch, stop, task)
