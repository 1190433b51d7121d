"""The aiohttp application: routes, middlewares and the gateway's lifecycle.

>>> app = create_app(bus, GatewaySettings(auth=False))   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from events.bus import Bus
from events.layout import all_streams
from events.sealed import refuse_start
from gateway import ingest, ui, webhooks
from gateway.api import routers
from gateway.api.openapi import openapi_handler
from gateway.context import CLOSING, GATEWAY, Gateway, gateway_of
from gateway.limits import ascii_headers_middleware, host_middleware
from gateway.problems import MAX_BODY_KEY, RETRY_AFTER_KEY, problem_middleware
from gateway.runindex import RUN_INDEX, RunIndex
from gateway.runwatch import run_index_ctx
from gateway.settings import GatewaySettings
from gateway.signatures import Verifier
from gateway.types import Clock

log = logging.getLogger("flowbus.gateway")


def create_app(bus: Bus, settings: GatewaySettings, *, clock: Clock = time.time) -> web.Application:
    """The gateway's application over a connected ``bus``."""
    gateway = Gateway(bus, settings, clock)
    middlewares = [gateway.metrics.middleware(), problem_middleware, ascii_headers_middleware]
    if settings.allowed_hosts:
        middlewares.append(host_middleware(settings.allowed_hosts))
    app = web.Application(client_max_size=settings.request_max_bytes, middlewares=middlewares)
    app[GATEWAY] = gateway
    app[RETRY_AFTER_KEY] = settings.retry_after_seconds
    app[MAX_BODY_KEY] = settings.request_max_bytes
    app[CLOSING] = asyncio.Event()
    app.cleanup_ctx.append(_lifecycle)
    app[RUN_INDEX] = RunIndex()
    app.cleanup_ctx.append(run_index_ctx)
    app.on_shutdown.append(_close_streams)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    gateway.metrics.before_scrape.append(lambda: _refresh_task_queue(gateway))
    app.router.add_get("/metrics", gateway.metrics.handle)
    app.router.add_post("/events", ingest.post_events)
    app.router.add_route("OPTIONS", "/events", ingest.options_events)
    for method in webhooks.METHODS:
        app.router.add_route(method, "/hooks/{slug}", webhooks.receive)
    app.router.add_get("/api/v1/openapi.json", openapi_handler)
    for router in routers():
        router.install(app)
    ui.install(app)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    layout = gateway.bus.layout
    # Bind the buckets once at start-up: a missing layout fails here, not on a request.
    for bucket in (layout.api_keys, layout.webhooks, layout.deployments, layout.flow_runs,
                   layout.variables, layout.automations):
        await gateway.kv(bucket)
    await _check_secrets_key(gateway)
    log.info("gateway up (namespace %s, auth %s)", gateway.bus.layout.namespace,
             "on" if gateway.settings.auth else "OFF")
    yield
    log.info("gateway stopped")


async def _check_secrets_key(gateway: Gateway) -> None:
    """Refuse to start without ``FLOWBUS_SECRETS_KEY`` when a webhook's secret needs it."""
    if gateway.secrets is not None:
        return
    kv = await gateway.kv(gateway.bus.layout.webhooks)
    for slug in await kv.keys():
        hook = await webhooks.load(kv, slug)
        if hook is not None and hook.verifier != Verifier.NONE:
            raise refuse_start("gateway", f"webhooks (first: {slug!r})")


async def _close_streams(app: web.Application) -> None:
    # Long-lived streams (SSE, WebSocket, log follow) end so shutdown need not wait for them.
    app[CLOSING].set()


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: NATS connected and every stream and bucket of the layout present."""
    gateway = gateway_of(request)
    bus = gateway.bus
    if not bus.is_connected:
        return web.json_response({"status": "unavailable", "reason": "NATS is not connected"},
                                 status=503, headers={"Retry-After": "1"})
    wanted = {c.name for c in all_streams(bus.layout, bus.settings)}
    try:
        present = {info.config.name for info in await bus.streams()}
    except Exception as exc:  # any failure to look is "not ready", said plainly
        return web.json_response(
            {"status": "unavailable", "reason": f"cannot list streams: {type(exc).__name__}"},
            status=503, headers={"Retry-After": "1"},
        )
    missing = sorted(n for n in wanted - present if n)
    if missing:
        return web.json_response(
            {"status": "unavailable", "reason": f"layout incomplete, missing: {', '.join(missing)}"},
            status=503, headers={"Retry-After": "1"},
        )
    return web.json_response({"status": "ready", "namespace": bus.layout.namespace})


async def _refresh_task_queue(gateway: Gateway) -> None:
    from events.background import queue_stats

    stats = await queue_stats(gateway.bus)
    gateway.metrics.task_queue_depth.set(stats.depth)
    gateway.metrics.task_queue_oldest_age.set(stats.oldest_age_seconds)
