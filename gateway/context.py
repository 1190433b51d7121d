"""What every handler reaches through ``request.app[GATEWAY]``: the bus and the gateway's parts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from events.bus import Bus
from events.kv import KV
from events.sealed import SecretBox, box_or_none
from gateway.auth import Authenticator, KeyStore, RateLimiter
from gateway.metrics import Metrics
from gateway.problems import Problem
from gateway.settings import GatewaySettings
from gateway.types import Clock


@dataclass
class Gateway:
    """The running gateway's shared parts (one per app)."""

    bus: Bus
    settings: GatewaySettings
    clock: Clock = time.time
    metrics: Metrics = field(default_factory=Metrics)
    secrets: SecretBox | None = field(default_factory=box_or_none)  # FLOWBUS_SECRETS_KEY
    auth: Authenticator = field(init=False)
    _kvs: dict[str, KV] = field(init=False, default_factory=dict)
    _streams: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        s = self.settings
        keys = KeyStore(self.bus, s, self.clock)
        limiter = RateLimiter(s.rate_limit_per_second, s.rate_limit_burst, s.rate_limit_max_keys,
                              self.clock)
        self.auth = Authenticator(keys, limiter, s)

    async def kv(self, bucket: str) -> KV:
        """A KV bucket of the layout, looked up once."""
        kv = self._kvs.get(bucket)
        if kv is None:
            kv = self._kvs[bucket] = await self.bus.kv(bucket)
        return kv

    @contextmanager
    def stream_slot(self) -> Iterator[None]:
        """Hold one of the ``streams_max_open`` stream slots; 503 when none is free."""
        if self._streams >= self.settings.streams_max_open:
            raise Problem(
                503, f"{self._streams} streams are open, the most this gateway serves "
                "(setting FLOWBUS_GATEWAY_STREAMS_MAX_OPEN); retry later",
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
            )
        self._streams += 1
        self.metrics.streams_open.inc()
        try:
            yield
        finally:
            self._streams -= 1
            self.metrics.streams_open.dec()


GATEWAY = web.AppKey("gateway", Gateway)
# Set when the gateway shuts down: long-lived streams end so draining need not wait for them.
CLOSING = web.AppKey("closing", asyncio.Event)


def gateway_of(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def closing_of(request: web.Request) -> asyncio.Event:
    return request.app[CLOSING]
