"""Locks on cache keys, for ``SERIALIZABLE`` cached task runs.

With a server the lock is a lease in ``flowbus-cache`` (:mod:`events.cache`), renewed
by a thread while the run holds it, so a runner killed mid-run frees it when the
lease expires. With no server it is an ``flock`` on a file under
``.locks`` in the local cache directory (`flowbus.results.local_cache_dir`), which the kernel frees when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
import uuid
from typing import Any

from flowbus.results import local_cache_dir, server_connection

LEASE_SECONDS = 30.0
POLL_SECONDS = 0.02


class CacheKeyLock:
    """A held lock; :meth:`release` gives it back (idempotent)."""

    def __init__(self, release: Any) -> None:
        self._release = release
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release()


def acquire(cache_key: str, timeout: float | None = None) -> CacheKeyLock:
    """Wait until this process holds the lock of ``cache_key``; TimeoutError past ``timeout``."""
    remote = server_connection()
    if remote is None:
        return _acquire_file(cache_key, timeout)
    return _acquire_remote(remote, cache_key, timeout)


def _acquire_file(cache_key: str, timeout: float | None) -> CacheKeyLock:
    path = local_cache_dir() / ".locks" / (hashlib.sha256(cache_key.encode()).hexdigest() + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                os.close(fd)
                raise TimeoutError(f"cache key lock not acquired within {timeout}s") from None
            time.sleep(POLL_SECONDS)

    def release() -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return CacheKeyLock(release)


def _acquire_remote(remote: Any, cache_key: str, timeout: float | None) -> CacheKeyLock:
    from events import cache

    kv = remote.kv(remote.layout.cache)
    holder = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        lock = remote.call(cache.try_lock(kv, cache_key, holder, LEASE_SECONDS))
        if lock is not None:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"cache key lock not acquired within {timeout}s")
        time.sleep(POLL_SECONDS * 5)
    stop = threading.Event()
    held = [lock]

    def renew() -> None:
        while not stop.wait(LEASE_SECONDS / 3):
            renewed = remote.call(cache.renew_lock(kv, held[0], holder, LEASE_SECONDS))
            if renewed is None:
                return
            held[0] = renewed

    thread = threading.Thread(target=renew, name="flowbus-cache-lock", daemon=True)
    thread.start()

    def release() -> None:
        stop.set()
        thread.join(timeout=5)
        remote.call(cache.unlock(kv, held[0]))

    return CacheKeyLock(release)
