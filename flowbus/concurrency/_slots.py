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
    waiter = slot_waiter(names, occupy, strict, lease_duration=lease_duration,
                         rate_limit=rate_limit, skip_missing_quietly=skip_missing_quietly)
    if waiter is None:
        return None
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    try:
        while (held := waiter.try_take()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise AcquireConcurrencySlotTimeoutError(
                    f"no free slots of {waiter.names} within {timeout_seconds} seconds")
            time.sleep(waiter.next_delay())
    finally:
        waiter.close()
    return held


def slot_waiter(
    names: str | list[str], occupy: int, strict: bool, *, lease_duration: float,
    rate_limit: bool = False, skip_missing_quietly: bool = False,
) -> SlotWaiter | None:
    """A :class:`SlotWaiter` over the limits in ``names`` that exist; None when none does
    (or there is no server)."""
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
    return SlotWaiter(remote, kv, limits, occupy, lease_duration, keep=not rate_limit)


class SlotWaiter:
    """Takes slots one attempt at a time, so the caller decides how to wait between them
    (``time.sleep``, or the task engine's ``Sleep`` step, which does not block an event
    loop). :meth:`next_delay` marks the holder as a waiter on first use;
    :meth:`close` unmarks it.
    """

    def __init__(self, remote: Any, kv: Any, limits: list[tuple[str, int, float]], occupy: int,
                 lease_duration: float, *, keep: bool = True) -> None:
        self.remote, self.kv, self.limits = remote, kv, limits
        self.occupy, self.lease_duration, self.keep = occupy, lease_duration, keep
        self.holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.names = [name for name, _, _ in limits]
        self.waiting = False
        self._delay = _POLL_MIN

    def try_take(self) -> Held | None:
        """One all-or-nothing attempt over every limit; the held slots, or None."""
        from events import concurrency

        taken: list[Any] = []
        for name, size, ttl in self.limits:
            got = self.remote.call(concurrency.acquire_many(
                self.kv, name, self.holder, occupy=self.occupy, ttl=ttl, limit=size))
            if not got:
                self.remote.call(concurrency.release_all(self.kv, taken))
                return None
            taken.extend(got)
        stop = threading.Event()
        if not self.keep:
            stop.set()  # rate-limit slots are never given back: they decay
            return Held(self.remote, self.kv, [], stop, None)
        held = Held(self.remote, self.kv, taken, stop, None)
        held.thread = threading.Thread(target=_renew, args=(held, self.lease_duration),
                                       name="flowbus-concurrency-lease", daemon=True)
        held.thread.start()
        return held

    def next_delay(self) -> float:
        """How long to wait before the next attempt (backing off); marks this holder waiting."""
        from events import concurrency

        if not self.waiting:
            self.waiting = True
            for name in self.names:
                self.remote.call(concurrency.mark_waiting(self.kv, name, self.holder, ttl=60))
        delay, self._delay = self._delay, min(self._delay * 2, _POLL_MAX)
        return delay

    def close(self) -> None:
        """Stop waiting: the holder is no longer counted among the limits' waiters."""
        from events import concurrency

        if self.waiting:
            self.waiting = False
            for name in self.names:
                self.remote.call(concurrency.unmark_waiting(self.kv, name, self.holder))


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


def task_tag_slot_waiter(tags: tuple[str, ...] | list[str]) -> SlotWaiter | None:
    """A waiter for one slot of every task tag limit (``flowbus concurrency-limit create
    --tag``) of ``tags``; None when there is no server or no tag has a limit."""
    if not tags or server_connection() is None:  # no server: no limits (and no cost)
        return None
    from events.concurrency import task_tag_limit

    return slot_waiter([task_tag_limit(t) for t in tags], 1, False,
                       lease_duration=DEFAULT_LEASE_SECONDS, skip_missing_quietly=True)
