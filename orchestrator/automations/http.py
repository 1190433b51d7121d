"""Outgoing HTTP of automations: signed webhook calls with retries (aiohttp client).

A body sent with a secret carries two headers so the receiver can check it came from
flowbus and is fresh (docs/automations.md shows the receiver's side):

- ``X-Flowbus-Timestamp``: Unix seconds when it was signed;
- ``X-Flowbus-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``.

``X-Flowbus-Delivery`` carries the action's idempotency key, the same on every retry,
so a receiver can drop a repeat. 5xx answers, 429, timeouts and connection errors are
retried with exponential backoff; another 4xx fails at once (retrying cannot help).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from events.errors import FlowbusError
from events.notification_channels import redact_url
from orchestrator.automations.targets import TargetPolicy

SIGNATURE_HEADER = "X-Flowbus-Signature"
TIMESTAMP_HEADER = "X-Flowbus-Timestamp"
DELIVERY_HEADER = "X-Flowbus-Delivery"
MAX_RESPONSE_KEPT = 512


class DeliveryFailed(FlowbusError):
    """An action could not be done; ``permanent`` when retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Flowbus-Signature`` value for ``body`` signed at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``base * 2**n``, at most ``cap`` seconds."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2**attempt))


class HttpSender:
    """One aiohttp session for every webhook and chat notification."""

    def __init__(self, backoff: Backoff, timeout: float, denied: Sequence[str] = (),
                 allowed: Sequence[str] = ()) -> None:
        self._backoff = backoff
        self._timeout = timeout
        self._policy = TargetPolicy(denied, allowed)
        self._session: aiohttp.ClientSession | None = None

    async def check_target(self, url: str, *, shown: str | None = None) -> None:
        """Refuse a URL whose host resolves into a denied network (permanent failure).

        Every address the resolver answers is normalised (orchestrator/automations/
        targets.py) and checked before each request; a DNS answer that changes between
        the check and the connection is not caught (deny at the network layer too).
        """
        if not self._policy.denied:
            return
        host = urlsplit(url).hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DeliveryFailed(f"cannot resolve {host!r}: {exc}") from None
        for info in infos:
            address = str(info[4][0])
            network = self._policy.denied_by(address)
            if network is not None:
                raise DeliveryFailed(
                    f"{shown or url} resolves to {address}, in denied network {network} "
                    "(FLOWBUS_AUTOMATIONS_DENIED_NETWORKS; exceptions in "
                    "FLOWBUS_AUTOMATIONS_ALLOWED_NETWORKS)", permanent=True,
                )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "flowbus-automations"},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def send(
        self, url: str, body: bytes, *, method: str = "POST", headers: Mapping[str, str] | None = None,
        secret: str | None = None, delivery: str = "", attempts: int = 1, time_limit: float | None = None,
        secret_url: bool = False,
    ) -> int:
        """Send until a 2xx/3xx answer; its status. :class:`DeliveryFailed` once attempts run out.

        ``secret_url``: the URL is a credential (a Slack or Teams webhook), so errors
        name only its scheme and host.
        """
        shown = redact_url(url) if secret_url else url
        await self.check_target(url, shown=shown)
        last = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._backoff.delay(attempt - 1))
            sent = {"Content-Type": "application/json", **(headers or {})}
            if delivery:
                sent[DELIVERY_HEADER] = delivery
            if secret:
                stamp = str(int(time.time()))
                sent[TIMESTAMP_HEADER] = stamp
                sent[SIGNATURE_HEADER] = sign(secret, stamp, body)
            try:
                async with self._client().request(
                    method, url, data=body, headers=sent, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=time_limit or self._timeout),
                ) as response:
                    if response.status < 400:
                        return response.status
                    text = (await response.text(errors="replace"))[:MAX_RESPONSE_KEPT]
                    last = f"{method} {shown} answered {response.status}: {text}"
                    if response.status < 500 and response.status != 429:
                        raise DeliveryFailed(last, permanent=True)
            except TimeoutError:
                last = f"{method} {shown} timed out"
            except aiohttp.ClientError as exc:
                last = f"{method} {shown} failed: {type(exc).__name__}: {str(exc).replace(url, shown)}"
        raise DeliveryFailed(f"{last} (after {attempts} attempts)")
