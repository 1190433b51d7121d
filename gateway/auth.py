"""API keys with scopes, and the per-key rate limit.

A key looks like ``fbk_<id>_<secret>``. Only its SHA-256 is stored, in the
``flowbus-api-keys`` bucket under ``<id>``; the key itself is shown once, when it
is created. A high-entropy key needs no slow hash: SHA-256 cannot be reversed and
the comparison is constant-time. A bootstrap admin key may come from the settings
to create the first managed keys.

Scopes: ``ingest`` (send events), ``read``, ``write`` (implies read: run, pause,
resume, cancel, change definitions), ``deploy`` (implies write: create deployments
and change where their code comes from, that is, choose the code runners execute),
``admin`` (everything, including managing keys and webhooks).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.bus import Bus
from gateway.problems import Problem
from gateway.settings import GatewaySettings
from gateway.types import Clock

KEY_PREFIX = "fbk"


class Scope(StrEnum):
    INGEST = "ingest"
    READ = "read"
    WRITE = "write"
    DEPLOY = "deploy"
    ADMIN = "admin"


_IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset(Scope),
    Scope.DEPLOY: frozenset({Scope.DEPLOY, Scope.WRITE, Scope.READ}),
    Scope.WRITE: frozenset({Scope.WRITE, Scope.READ}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.INGEST: frozenset({Scope.INGEST}),
}


def grants(scopes: frozenset[Scope], needed: Scope) -> bool:
    """Whether a key holding ``scopes`` may do what needs ``needed``."""
    return any(needed in _IMPLIED[s] for s in scopes)


class ApiKeyRecord(BaseModel):
    """A managed API key as stored (never the key itself)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="the key's public id, the middle part of the key")
    name: str = Field(description="what the key is for")
    scopes: list[Scope] = Field(description="what the key may do")
    created: datetime = Field(description="when the key was created")
    sha256: str = Field(description="hex SHA-256 of the whole key")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key id (or 'bootstrap', 'anonymous') and its scopes."""

    id: str
    scopes: frozenset[Scope]


ANONYMOUS = Principal("anonymous", frozenset({Scope.ADMIN}))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A new (key id, whole key)."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


class KeyStore:
    """Looks keys up in KV, caching each answer briefly (revocation takes that long)."""

    def __init__(self, bus: Bus, settings: GatewaySettings, clock: Clock) -> None:
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._cache: OrderedDict[str, tuple[ApiKeyRecord | None, float]] = OrderedDict()
        admin = settings.admin_api_key
        self._bootstrap = _digest(admin.get_secret_value()) if admin is not None else None

    async def create(self, name: str, scopes: list[Scope]) -> tuple[ApiKeyRecord, str]:
        key_id, token = new_key()
        record = ApiKeyRecord(
            id=key_id, name=name, scopes=scopes, created=datetime.now(UTC), sha256=_digest(token)
        )
        kv = await self._bus.kv(self._bus.layout.api_keys)
        await kv.create(key_id, record.model_dump_json().encode())
        return record, token

    async def list(self) -> list[ApiKeyRecord]:
        kv = await self._bus.kv(self._bus.layout.api_keys)
        out = []
        for key in await kv.keys():
            entry = await kv.get(key)
            if entry is not None:
                out.append(ApiKeyRecord.model_validate_json(entry.value))
        return out

    async def delete(self, key_id: str) -> bool:
        kv = await self._bus.kv(self._bus.layout.api_keys)
        if await kv.get(key_id) is None:
            return False
        await kv.delete(key_id)
        self._cache.pop(key_id, None)
        return True

    async def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token stands for, or None when it is not a valid key."""
        digest = _digest(token)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal("bootstrap", frozenset({Scope.ADMIN}))
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX or not _is_hex(parts[1]):
            return None
        record = await self._lookup(parts[1])
        if record is None or not hmac.compare_digest(digest, record.sha256):
            return None
        return Principal(record.id, frozenset(record.scopes))

    async def _lookup(self, key_id: str) -> ApiKeyRecord | None:
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        kv = await self._bus.kv(self._bus.layout.api_keys)
        entry = await kv.get(key_id)
        record = None if entry is None else ApiKeyRecord.model_validate_json(entry.value)
        self._cache[key_id] = (record, now + self._settings.key_cache_seconds)
        self._cache.move_to_end(key_id)
        while len(self._cache) > self._settings.rate_limit_max_keys:
            self._cache.popitem(last=False)
        return record


def _is_hex(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


class RateLimiter:
    """A token bucket per principal; the least recently seen buckets are forgotten."""

    def __init__(self, rate: float, burst: int, max_keys: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 when allowed, else the seconds until it would be."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [self._burst, now]
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            return 0.0
        return (cost - bucket[0]) / self._rate


def check_scope(principal: Principal, needed: Scope, why: str = "") -> None:
    """403 naming the scope when ``principal`` lacks ``needed``."""
    if not grants(principal.scopes, needed):
        held = ", ".join(sorted(principal.scopes)) or "none"
        raise Problem(
            403, f"this API key lacks the {needed.value!r} scope{why} (it has: {held})",
            required_scope=needed.value,
        )


class Authenticator:
    """Checks the bearer key of a request against the scope a route needs."""

    def __init__(self, keys: KeyStore, limiter: RateLimiter, settings: GatewaySettings) -> None:
        self.keys = keys
        self._limiter = limiter
        self._enabled = settings.auth

    async def require(self, headers: Any, needed: Scope) -> Principal:
        """The caller if its key grants ``needed``; 401, 403 or 429 :class:`Problem` otherwise."""
        if not self._enabled:
            return ANONYMOUS
        header = headers.get("Authorization")
        if header and not header.isascii():
            raise Problem(401, "the Authorization header must be ASCII ('Bearer <key>')",
                          headers={"WWW-Authenticate": 'Bearer realm="flowbus"'})
        if not header:
            raise Problem(
                401, "an API key is required: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Bearer realm="flowbus"'},
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                401, f"the Authorization header must be 'Bearer <key>', got scheme {scheme[:20]!r}",
                headers={"WWW-Authenticate": 'Bearer realm="flowbus"'},
            )
        principal = await self.keys.authenticate(token)
        if principal is None:
            raise Problem(
                401, "the API key is unknown or revoked",
                headers={"WWW-Authenticate": 'Bearer realm="flowbus", error="invalid_token"'},
            )
        check_scope(principal, needed)
        self.limit(principal.id, "this API key")
        return principal

    def limit(self, key: str, what: str, cost: float = 1.0) -> None:
        """Charge ``key``'s token bucket ``cost`` tokens; 429 with ``Retry-After`` when short."""
        wait = self._limiter.take(key, cost)
        if wait > 0:
            raise Problem(
                429, f"rate limit of {what} exceeded; retry in {wait:.2f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
