"""Running the gateway: connect the bus, listen, and shut down gracefully.

Shutdown order: stop accepting connections, end the long-lived streams, let
in-flight requests finish within the drain timeout, then close NATS (every
accepted event was acknowledged before its 202, so nothing is lost)::

    stop = asyncio.Event()
    await serve(NatsSettings(), GatewaySettings(), stop=stop)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from events.bus import Bus
from events.errors import FlowbusError
from events.settings import NatsSettings
from gateway.app import create_app
from gateway.context import GATEWAY
from gateway.settings import GatewaySettings
from gateway.sources.manager import run_sources
from gateway.sources.settings import SourcesSettings
from gateway.types import Clock

log = logging.getLogger("flowbus.gateway")


class ListenError(FlowbusError):
    """The gateway could not bind its address (in use, not permitted, unknown host)."""


@dataclass(frozen=True)
class RunningGateway:
    """A listening gateway: its app and the URL it answers on."""

    app: web.Application
    url: str
    port: int


@asynccontextmanager
async def running(
    bus: Bus, settings: GatewaySettings, *, clock: Clock = time.time, reuse_port: bool = False
) -> AsyncIterator[RunningGateway]:
    """Listen on ``settings.host:port`` over an already connected ``bus``; stop on exit.

    ``reuse_port`` lets several processes listen on the same port (see gateway.workers).
    """
    app = create_app(bus, settings, clock=clock)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None,
        shutdown_timeout=settings.drain_timeout_seconds,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024,
                           reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(
                f"the gateway cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
                "choose another port (FLOWBUS_GATEWAY_PORT, `flowbus gateway --port`, "
                "`flowbus dev --gateway-port`; 0 picks a free one)"
            ) from None
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        gateway = RunningGateway(app, f"http://{shown}:{port}", int(port))
        log.info("gateway listening on %s", gateway.url)
        yield gateway
    finally:
        await runner.cleanup()


async def serve(
    nats_settings: NatsSettings,
    settings: GatewaySettings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event,
    announce: Callable[[str], None] | None = None,
    reuse_port: bool = False,
    sources_settings: SourcesSettings | None = None,
) -> None:
    """Connect to NATS, serve until ``stop`` is set, then drain and close.

    ``ready`` is set once the gateway accepts requests; ``announce`` gets its URL.
    """
    async with await Bus.connect(nats_settings, name="flowbus-gateway") as bus:
        async with running(bus, settings, reuse_port=reuse_port) as gateway:
            # Event sources run beside the HTTP edge and drain with it (docs/sources.md).
            sources = asyncio.ensure_future(run_sources(
                bus, sources_settings or SourcesSettings(), stop,
                registry=gateway.app[GATEWAY].metrics.registry))
            if announce is not None:
                announce(gateway.url)
            if ready is not None:
                ready.set()
            await stop.wait()
            log.info("gateway draining (up to %.0f s)", settings.drain_timeout_seconds)
            await sources
