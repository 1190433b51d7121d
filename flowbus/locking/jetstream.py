"""Locks for any process connected to the server: leases in the ``flowbus-cache`` KV.

The lock of a key is the same record as the cache-key lock of a ``SERIALIZABLE``
cached task (:mod:`events.cache`): taken with a KV create, released with a delete
at the revision taken. While held without a ``hold_timeout``, a thread renews the
lease, so a holder that dies frees it when the lease (``lease_seconds``) expires.
"""

from __future__ import annotations

import threading
from typing import Any

from flowbus.exceptions import ConfigurationError
from flowbus.locking._base import PollingLocks, check_key, not_held
from flowbus.results import server_connection


class _Held:
    def __init__(self, lock: Any, holder: str) -> None:
        self.lock = lock
        self.holder = holder
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None


class JetStreamLockManager(PollingLocks):
    """Locks shared by every process connected to the server (``FLOWBUS_NATS_URL``,
    or a run on a runner)."""

    poll = 0.05

    def __init__(self, lease_seconds: float = 30.0) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        self.lease_seconds = lease_seconds
        self._mutex = threading.Lock()
        self._held: dict[str, _Held] = {}

    def _kv(self) -> tuple[Any, Any]:
        remote = server_connection()
        if remote is None:
            raise ConfigurationError(
                "JetStreamLockManager needs a server: set FLOWBUS_NATS_URL, or run on a runner"
            )
        return remote, remote.kv(remote.layout.cache)

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        from events import cache

        remote, kv = self._kv()
        with self._mutex:
            mine = self._held.get(key)
            if mine is not None and mine.holder == holder:
                return True
        lock = remote.call(cache.try_lock(kv, key, holder, hold_timeout or self.lease_seconds))
        if lock is None:
            return False
        held = _Held(lock, holder)
        if hold_timeout is None:
            held.thread = threading.Thread(target=self._renew, args=(remote, kv, held),
                                           name="flowbus-lock-lease", daemon=True)
            held.thread.start()
        with self._mutex:
            self._held[key] = held
        return True

    def _renew(self, remote: Any, kv: Any, held: _Held) -> None:
        from events import cache

        while not held.stop.wait(self.lease_seconds / 3):
            renewed = remote.call(cache.renew_lock(kv, held.lock, held.holder, self.lease_seconds))
            if renewed is None:
                return
            held.lock = renewed

    def release_lock(self, key: str, holder: str) -> None:
        """Give the lock back; ValueError when ``holder`` does not hold it here."""
        from events import cache

        check_key(key, holder)
        with self._mutex:
            held = self._held.get(key)
            if held is None or held.holder != holder:
                raise not_held(key, holder)
            del self._held[key]
        held.stop.set()
        if held.thread is not None:
            held.thread.join(timeout=5)
        remote, kv = self._kv()
        remote.call(cache.unlock(kv, held.lock))

    def is_locked(self, key: str) -> bool:
        from events import cache

        check_key(key)
        remote, kv = self._kv()
        return remote.call(cache.lock_holder(kv, key)) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        from events import cache

        check_key(key, holder)
        remote, kv = self._kv()
        return bool(remote.call(cache.lock_holder(kv, key)) == holder)


__all__ = ["JetStreamLockManager"]
