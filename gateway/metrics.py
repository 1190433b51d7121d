"""Prometheus metrics of the gateway (prefix ``flowbus_gateway_``), on their own registry,
and the background-task queue's (``flowbus_task_queue_*``, read from JetStream at scrape).

Labels are bounded: the route's canonical path (never the raw URL), the method,
the status class, the ingest mode and the webhook verifier kind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.types import Handler

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The gateway's counters and latencies."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flowbus_gateway_requests_total", "HTTP requests answered",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "flowbus_gateway_request_seconds", "time to answer an HTTP request",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
        )
        self.in_flight = Gauge(
            "flowbus_gateway_requests_in_flight", "requests being handled",
            registry=self.registry,
        )
        self.events_accepted = Counter(
            "flowbus_gateway_events_accepted_total", "events stored in JetStream",
            ["mode"], registry=self.registry,
        )
        self.publish_latency = Histogram(
            "flowbus_gateway_publish_seconds", "publish to JetStream ack, per request",
            ["kind"], registry=self.registry,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2, 10),
        )
        self.events_duplicate = Counter(
            "flowbus_gateway_events_duplicate_total", "events already stored (same source, id)",
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "flowbus_gateway_events_rejected_total", "ingest requests refused",
            ["reason"], registry=self.registry,
        )
        self.webhook_signatures_failed = Counter(
            "flowbus_gateway_webhook_signature_failures_total", "webhook deliveries refused",
            ["verifier"], registry=self.registry,
        )
        self.rate_limited = Counter(
            "flowbus_gateway_rate_limited_total", "requests refused by the per-key rate limit",
            registry=self.registry,
        )
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[str, Any] = {}
        self._children: dict[tuple[int, str], Any] = {}
        self.task_queue_depth = Gauge(
            "flowbus_task_queue_depth",
            "background task runs queued and not yet finished (waiting or running)",
            registry=self.registry,
        )
        self.task_queue_oldest_age = Gauge(
            "flowbus_task_queue_oldest_age_seconds",
            "age of the oldest background task run still queued (0 when none)",
            registry=self.registry,
        )
        # Refreshed before each scrape (e.g. the task queue, read from JetStream).
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []
        self.streams_open = Gauge(
            "flowbus_gateway_streams_open", "open SSE, WebSocket and log-follow streams",
            registry=self.registry,
        )

    def middleware(self) -> web.middlewares._Middleware:  # type: ignore[name-defined]
        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            self.in_flight.inc()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.in_flight.dec()
                route = _route_of(request)
                method = request.method if request.method in _METHODS else "other"
                self._counter(method, route, status // 100).inc()
                self._histogram(route).observe(time.perf_counter() - start)

        return measure

    def _counter(self, method: str, route: str, status_class: int) -> Any:
        # Label lookups cost more than the increment; routes and methods are a bounded set.
        key = (method, route, status_class)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.requests.labels(method, route, f"{status_class}xx")
        return child

    def child(self, metric: Counter | Histogram, label: str) -> Any:
        """``metric.labels(label)``, looked up once per label (each label set is bounded)."""
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def _histogram(self, route: str) -> Any:
        child = self._histograms.get(route)
        if child is None:
            child = self._histograms[route] = self.latency.labels(route)
        return child

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the Prometheus text format."""
        for refresh in self.before_scrape:
            try:
                async with asyncio.timeout(2.0):
                    await refresh()
            except Exception as exc:  # a gauge left as it was beats a failed scrape
                logging.getLogger("flowbus.gateway").warning("metrics refresh failed: %s", exc)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _route_of(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    if resource is None:
        return "unmatched"
    return resource.canonical
