"""Helpers for automation tests: an orchestrator with automations, a recording HTTP receiver."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.records import FlowRun
from orchestrator.automations.settings import AutomationSettings
from orchestrator.service import Orchestrator
from runners import claims
from tests.created_runs import created_run
from tests.orchestrator.support import ManualClock, Running, fast_settings, flow_runs, wait_until

__all__ = ["ManualClock", "Receiver", "Request", "flow_runs", "held_run", "start", "wait_until"]


def quick_settings(**overrides: Any) -> AutomationSettings:
    # The tests' receivers listen on loopback, denied by default.
    values: dict[str, Any] = {"retry_base_seconds": 0.01, "retry_max_seconds": 0.05, "http_timeout_seconds": 10,
                              "allowed_networks": ["127.0.0.0/8", "::1/128"]}
    values.update(overrides)
    return AutomationSettings(**values)


async def start(bus: Bus, clock: ManualClock | None = None, **automation: Any) -> Running:
    orch = Orchestrator(
        bus, fast_settings(), clock=clock or ManualClock(datetime.now(UTC)),
        automation_settings=quick_settings(**automation),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(orch.run(stop))
    waiter = asyncio.ensure_future(orch.consuming.wait())
    await asyncio.wait({waiter, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    waiter.cancel()
    return Running(orch, stop, task)


async def held_run(bus: Bus, deployment: str, run_id: str) -> FlowRun:
    """A run the orchestrator created, held Running by a runner's claim (runners.claims)
    that no runner acts on: the record stays as the automation under test leaves it."""
    run = await created_run(bus, run_id, deployment=deployment)
    _, held = claims.claimed(run, "runner-1", datetime.now(UTC))
    held = claims.body_started(held)
    kv = await bus.kv(bus.layout.flow_runs)
    await kv.update(run_id, lambda _: held.model_dump_json().encode())
    return held


def event(kind: str, source: str = "/test", **fields: Any) -> CloudEvent:
    return CloudEvent.create(kind, source=source, **fields)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on loopback that records requests and answers from a script."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Request(request.path, dict(request.headers), body))
        delay = self.delays.pop(0) if self.delays else 0.0
        if delay:
            await asyncio.sleep(delay)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 400 else "nope")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def events_of(bus: Bus, kind: str) -> list[CloudEvent]:
    """Every stored event of type ``kind`` (read from the events stream, not consumed)."""
    from events.cloudevent import decode

    js = bus._js
    info = await js.stream_info(bus.layout.events_stream)
    out = []
    subject = f"{bus.layout.events_prefix}.{kind}"
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        try:
            msg = await js.get_msg(bus.layout.events_stream, seq)
        except Exception:
            continue
        if msg.subject == subject:
            out.append(decode(msg.data or b""))
    return out


async def wait_events(bus: Bus, kind: str, count: int = 1, within: float = 60.0) -> list[CloudEvent]:
    async def enough() -> bool:
        return len(await events_of(bus, kind)) >= count

    await wait_until(enough, within)
    return await events_of(bus, kind)
