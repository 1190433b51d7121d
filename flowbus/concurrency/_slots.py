"""Taking and holding global concurrency slots for the SDK (sync core of both facades).

Slots are leases in ``flowbus-concurrency`` (:mod:`events.concurrency`): taken
all-or-nothing across every named limit, renewed by a thread while held, and given
back on exit. A process killed while holding slots stops renewing them, so they
free themselves when the lease expires: nothing leaks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flowbus.exceptions import FlowbusError
from flowbus.results import server_connection

_log = logging.getLogger("flowbus.concurrency")
DEFAULT_LEASE_SECONDS = 30.0
_POLL_MIN, _POLL_MAX = 0.02, 0.5


class ConcurrencySlotAcquisitionError(FlowbusError):
    """Slots could not be taken: a limit is missing (with ``strict=True``) or unusable."""


class AcquireConcurrencySlotTimeoutError(TimeoutError):
    """The slots were not free within ``timeout_seconds``."""


@dataclass
class Held:
    """Slots held by this process; :meth:`release` gives them back (idempotent)."""

    remote: Any
    kv: Any
    slots: list[Any]
    stop: threading.Event
    thread: threading.Thread | None

    def release(self) -> None:
        from events import concurrency

        if self.stop.is_set():
            return
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.slots:
            self.remote.call(concurrency.release_all(self.kv, self.slots))


def _names(names: str | list[str]) -> list[str]:
    listed = [names] if isinstance(names, str) else list(names)
    if not listed or not all(isinstance(n, str) and n for n in listed):
        raise ValueError(f"names must be a limit name or a non-empty list of them, got {names!r}")
    return listed


def acquire(
    names: str | list[str], occupy: int, timeout_seconds: float | None, strict: bool,
    *, lease_duration: float = DEFAULT_LEASE_SECONDS, rate_limit: bool = False,
    skip_missing_quietly: bool = False,
) -> Held | None:
    """Take ``occupy`` slots of every limit in ``names``; None when nothing is to be held."""
    from events import concurrency

    listed = _names(names)
    if not isinstance(occupy, int) or occupy < 1:
        raise ValueError(f"occupy must be a positive integer, got {occupy!r}")
    if lease_duration <= 0:
        raise ValueError(f"lease_duration must be positive, got {lease_duration!r}")
    remote = server_connection()
    if remote is None:
        if not skip_missing_quietly:
            _no_server(listed, strict)
        return None
    kv = remote.kv(remote.layout.concurrency)
    limits: list[tuple[str, int, float]] = []
    for name in listed:
        found = remote.call(concurrency.get_limit_decay(kv, name))
        if found is None:
            if strict:
                raise ConcurrencySlotAcquisitionError(
                    f"concurrency limit {name!r} is not defined; create it with "
                    f"`flowbus concurrency-limit create {name} --limit N` (or pass strict=False)")
            if not skip_missing_quietly:
                _log.warning("Concurrency limit %r does not exist: proceeding without it.", name)
            continue
        size, decay = found
        if occupy > size:
            raise ConcurrencySlotAcquisitionError(
                f"occupy={occupy} is more than the {size} slot(s) of limit {name!r}")
        if rate_limit:
            if not decay:
                raise ConcurrencySlotAcquisitionError(
                    f"limit {name!r} has no slot decay: rate_limit needs one "
                    "(--slot-decay-per-second)")
            limits.append((name, size, 1.0 / decay))
        else:
            limits.append((name, size, lease_duration))
    if not limits:
        return None
    holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    slots = _take_all(remote, kv, limits, holder, occupy, deadline, timeout_seconds)
    stop = threading.Event()
    if rate_limit:
        stop.set()  # rate-limit slots are never given back: they decay
        return Held(remote, kv, [], stop, None)
    held = Held(remote, kv, slots, stop, None)
    held.thread = threading.Thread(target=_renew, args=(held, lease_duration),
                                   name="flowbus-concurrency-lease", daemon=True)
    held.thread.start()
    return held


def _take_all(remote: Any, kv: Any, limits: list[tuple[str, int, float]], holder: str,
              occupy: int, deadline: float | None, timeout: float | None) -> list[Any]:
    from events import concurrency

    delay = _POLL_MIN
    waiting = False
    try:
        while True:
            taken: list[Any] = []
            for name, size, ttl in limits:
                got = remote.call(concurrency.acquire_many(kv, name, holder, occupy=occupy,
                                                           ttl=ttl, limit=size))
                if not got:
                    remote.call(concurrency.release_all(kv, taken))
                    taken = []
                    break
                taken.extend(got)
            if taken:
                return taken
            if deadline is not None and time.monotonic() >= deadline:
                raise AcquireConcurrencySlotTimeoutError(
                    f"no free slots of {[n for n, _, _ in limits]} within {timeout} seconds")
            if not waiting:
                waiting = True
                for name, _, _ in limits:
                    remote.call(concurrency.mark_waiting(kv, name, holder, ttl=60))
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
    finally:
        if waiting:
            for name, _, _ in limits:
                remote.call(concurrency.unmark_waiting(kv, name, holder))


def _renew(held: Held, lease: float) -> None:
    from events import concurrency

    while not held.stop.wait(lease / 3):
        renewed = []
        for slot in held.slots:
            new = held.remote.call(concurrency.renew(held.kv, slot, ttl=lease))
            if new is None:
                _log.warning("Lost concurrency slot %s (its lease expired).", slot.key)
                continue
            renewed.append(new)
        held.slots = renewed


_warned_no_server = False


def _no_server(names: list[str], strict: bool) -> None:  # raises, or warns once
    global _warned_no_server
    if strict:
        raise ConcurrencySlotAcquisitionError(
            f"concurrency limits {names} need a server (FLOWBUS_NATS_URL); with none, no "
            "limit is defined (pass strict=False to proceed without them)")
    if not _warned_no_server:
        _warned_no_server = True
        _log.warning("No server (FLOWBUS_NATS_URL unset): concurrency limits %s are not enforced.",
                     names)


def hold_task_tag_slots(tags: tuple[str, ...] | list[str]) -> Held | None:
    """Wait for a slot of every task tag limit (``flowbus concurrency-limit create --tag``)."""
    if not tags or server_connection() is None:  # no server: no limits (and no cost)
        return None
    from events.concurrency import task_tag_limit

    return acquire([task_tag_limit(t) for t in tags], 1, None, False, skip_missing_quietly=True)
