"""Concurrency slots as leases in ``flowbus-concurrency``: the protocol every part uses.

A limit ``name`` with ``limit`` slots owns the keys ``slot.<name>.0`` ..
``slot.<name>.<limit-1>``. Taking a slot is a KV ``create`` of a free key, or a
compare-and-set over a lease that expired, so two takers never hold one slot; a
holder renews its lease before ``expires`` and deletes the key to release it. A
crashed holder stops renewing and its slot frees itself at expiry: nothing leaks.

Named limits (global ones for ``flowbus.concurrency.concurrency(name, occupy)``, and
``tag-<tag>`` limits for tagged runs) are defined by ``limit.<name>`` keys holding
``{"limit": N}``. Deployment limits come from the deployment itself
(``deployment-<name>``). The orchestrator also records which slots a flow run holds
under ``held.<flow run id>`` so it can renew and release them.

>>> async def guarded(kv: KV) -> None:
...     slots = await acquire_many(kv, "db", "worker-1", occupy=2, ttl=30)
...     try:
...         ...
...     finally:
...         await release_all(kv, slots)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from events.errors import AlreadyExists, FlowbusError, NotFound, UpdateConflict
from events.kv import KV

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_LIMIT = 10_000


class InvalidLimit(FlowbusError, ValueError):
    """A concurrency limit name or size is not usable."""


def limit_name(name: str) -> str:
    """``name`` as a key token: kept when plain, else a readable stem plus a hash."""
    if _NAME.fullmatch(name):
        return name
    if not name or len(name) > 1024:
        raise InvalidLimit(f"concurrency limit name {name[:40]!r} must be 1-1024 characters")
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40]
    return f"{stem}-{hashlib.blake2b(name.encode(), digest_size=6).hexdigest()}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Slot:
    """One taken slot: release or renew it with this."""

    key: str
    holder: str
    revision: int
    expires: datetime


def _slot_value(holder: str, expires: datetime) -> bytes:
    return json.dumps({"holder": holder, "expires": expires.isoformat()}).encode()


TASK_TAG_PREFIX = "task-tag-"


def task_tag_limit(tag: str) -> str:
    """The name of the limit on task runs tagged ``tag`` (Prefect's tag concurrency limits)."""
    return f"{TASK_TAG_PREFIX}{tag}"


async def set_limit(kv: KV, name: str, limit: int, *, slot_decay_per_second: float | None = None) -> None:
    """Define (or change) the named limit ``name`` to ``limit`` slots.

    With ``slot_decay_per_second`` the limit also serves ``rate_limit``: a slot taken
    for a rate limit frees itself after ``1 / slot_decay_per_second`` seconds.
    """
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidLimit(f"concurrency limit {limit} for {name!r} must be 0-{MAX_LIMIT}")
    if slot_decay_per_second is not None and not 0 < slot_decay_per_second <= 1000:
        raise InvalidLimit(f"slot_decay_per_second {slot_decay_per_second} for {name!r} must be "
                           "over 0 and at most 1000")
    body = {"name": name, "limit": limit, "slot_decay_per_second": slot_decay_per_second}
    await kv.put(f"limit.{limit_name(name)}", json.dumps(body).encode())


@dataclass(frozen=True, slots=True)
class LimitInfo:
    """A defined limit and how it is used right now."""

    name: str
    limit: int
    slot_decay_per_second: float | None
    active_slots: int
    waiters: int


async def limit_info(kv: KV, name: str, *, keys: list[str] | None = None,
                     now: datetime | None = None) -> LimitInfo | None:
    """The limit ``name`` with its slots in use (unexpired leases) and waiters, or None."""
    value = await kv.get_json(f"limit.{limit_name(name)}")
    if value is None:
        return None
    now = now or _now()
    token = limit_name(name)
    keys = await kv.keys() if keys is None else keys
    active = waiters = 0
    for key in keys:
        if key.startswith(f"slot.{token}.") or key.startswith(f"wait.{token}."):
            held = await kv.get_json(key)
            if held is not None and datetime.fromisoformat(held["expires"]) > now:
                if key.startswith("slot."):
                    active += 1
                else:
                    waiters += 1
    return LimitInfo(value.get("name", name), int(value["limit"]),
                     value.get("slot_decay_per_second"), active, waiters)


async def list_limits(kv: KV) -> list[LimitInfo]:
    """Every defined limit, by name."""
    keys = await kv.keys()
    out = []
    for key in keys:
        if key.startswith("limit."):
            value = await kv.get_json(key)
            if value is not None:
                info = await limit_info(kv, value["name"], keys=keys)
                if info is not None:
                    out.append(info)
    return sorted(out, key=lambda i: i.name)


async def mark_waiting(kv: KV, name: str, holder: str, *, ttl: float) -> None:
    """Count ``holder`` among the waiters of ``name`` for ``ttl`` seconds (a metric only)."""
    expires = _now() + timedelta(seconds=ttl)
    key = f"wait.{limit_name(name)}.{hashlib.blake2b(holder.encode(), digest_size=8).hexdigest()}"
    await kv.put(key, _slot_value(holder, expires))


async def unmark_waiting(kv: KV, name: str, holder: str) -> None:
    key = f"wait.{limit_name(name)}.{hashlib.blake2b(holder.encode(), digest_size=8).hexdigest()}"
    if await kv.get(key) is not None:
        await kv.delete(key)


async def get_limit(kv: KV, name: str) -> int | None:
    """The size of named limit ``name``, or None when it is not defined."""
    value = await kv.get_json(f"limit.{limit_name(name)}")
    return None if value is None else int(value["limit"])


async def get_limit_decay(kv: KV, name: str) -> tuple[int, float | None] | None:
    """(size, slot decay per second) of limit ``name``, or None when it is not defined."""
    value = await kv.get_json(f"limit.{limit_name(name)}")
    return None if value is None else (int(value["limit"]), value.get("slot_decay_per_second"))


async def delete_limit(kv: KV, name: str) -> bool:
    """Delete limit ``name``; False when it was not defined."""
    key = f"limit.{limit_name(name)}"
    if await kv.get(key) is None:
        return False
    await kv.delete(key)
    return True


async def acquire(
    kv: KV, name: str, limit: int, holder: str, *, ttl: float, now: datetime | None = None
) -> Slot | None:
    """Take one slot of ``name`` for ``holder`` (the one it already holds, if any).

    None when all ``limit`` slots are held by others with unexpired leases.
    """
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidLimit(f"concurrency limit {limit} for {name!r} must be 0-{MAX_LIMIT}")
    now = now or _now()
    expires = now + timedelta(seconds=ttl)
    token = limit_name(name)
    free: list[tuple[str, int | None]] = []
    for index in range(limit):
        key = f"slot.{token}.{index}"
        entry = await kv.get(key)
        if entry is None:
            free.append((key, None))
            continue
        value = entry.json()
        if value.get("holder") == holder:
            revision = await _cas(kv, key, _slot_value(holder, expires), entry.revision)
            if revision is not None:
                return Slot(key, holder, revision, expires)
        elif datetime.fromisoformat(value["expires"]) <= now:
            free.append((key, entry.revision))
    for key, revision in free:
        body = _slot_value(holder, expires)
        if revision is None:
            try:
                return Slot(key, holder, await kv.create(key, body), expires)
            except AlreadyExists:
                continue
        new_revision = await _cas(kv, key, body, revision)
        if new_revision is not None:
            return Slot(key, holder, new_revision, expires)
    return None


async def _cas(kv: KV, key: str, body: bytes, revision: int) -> int | None:
    try:
        return await kv.cas(key, body, revision)
    except UpdateConflict:
        return None


async def acquire_many(
    kv: KV, name: str, holder: str, *, occupy: int = 1, ttl: float, limit: int | None = None,
    now: datetime | None = None,
) -> list[Slot]:
    """Take ``occupy`` slots of named limit ``name`` at once, or none (empty list).

    ``limit`` defaults to the defined size (:func:`set_limit`); :class:`NotFound` when
    the limit is not defined.
    """
    if limit is None:
        limit = await get_limit(kv, name)
        if limit is None:
            raise NotFound(f"concurrency limit {name!r} is not defined; define it first")
    taken: list[Slot] = []
    for part in range(occupy):
        slot = await acquire(kv, name, limit, f"{holder}#{part}", ttl=ttl, now=now)
        if slot is None:
            await release_all(kv, taken)
            return []
        taken.append(slot)
    return taken


async def renew(kv: KV, slot: Slot, *, ttl: float, now: datetime | None = None) -> Slot | None:
    """Extend the lease; None if it was lost (expired and taken by another)."""
    expires = (now or _now()) + timedelta(seconds=ttl)
    revision = await _cas(kv, slot.key, _slot_value(slot.holder, expires), slot.revision)
    return None if revision is None else Slot(slot.key, slot.holder, revision, expires)


async def release(kv: KV, slot: Slot) -> None:
    """Give the slot back (a no-op when it already passed to another holder)."""
    entry = await kv.get(slot.key)
    if entry is None or entry.json().get("holder") != slot.holder:
        return
    try:
        await kv.delete(slot.key, revision=entry.revision)
    except UpdateConflict:
        return


async def release_all(kv: KV, slots: list[Slot]) -> None:
    for slot in slots:
        await release(kv, slot)


async def slots_of(kv: KV, key: str, holder: str) -> Slot | None:
    """The slot at ``key`` if ``holder`` still holds it."""
    entry = await kv.get(key)
    if entry is None:
        return None
    value = entry.json()
    if value.get("holder") != holder:
        return None
    return Slot(key, holder, entry.revision, datetime.fromisoformat(value["expires"]))
