"""Locks for the threads of one process (Prefect's ``prefect.locking.memory``)."""

from __future__ import annotations

import threading
import time

from flowbus.locking._base import PollingLocks, check_key


class MemoryLockManager(PollingLocks):
    """In-process locks; a lock with a ``hold_timeout`` lapses after it.

    Every ``MemoryLockManager()`` of a process shares one table, as in Prefect.
    """

    _instance: MemoryLockManager | None = None
    _instance_lock = threading.Lock()

    def __new__(cls) -> MemoryLockManager:
        with cls._instance_lock:
            instance = cls.__dict__.get("_instance")  # one per class: a subclass gets its own
            if instance is None:
                instance = super().__new__(cls)
                instance._mutex = threading.Lock()
                instance._held = {}
                cls._instance = instance
            return instance

    _mutex: threading.Lock
    _held: dict[str, tuple[str, float | None]]

    def _live(self, key: str) -> tuple[str, float | None] | None:
        entry = self._held.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= time.monotonic():
            del self._held[key]
            return None
        return entry

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        with self._mutex:
            entry = self._live(key)
            if entry is not None and entry[0] != holder:
                return False
            expires = None if hold_timeout is None else time.monotonic() + hold_timeout
            self._held[key] = (holder, expires)
            return True

    def release_lock(self, key: str, holder: str) -> None:
        """Give the lock back; ValueError when ``holder`` does not hold it."""
        check_key(key, holder)
        with self._mutex:
            entry = self._live(key)
            if entry is None or entry[0] != holder:
                raise ValueError(f"No lock held by {holder!r} on {key!r}")
            del self._held[key]

    def is_locked(self, key: str) -> bool:
        check_key(key)
        with self._mutex:
            return self._live(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        check_key(key, holder)
        with self._mutex:
            entry = self._live(key)
            return entry is not None and entry[0] == holder


__all__ = ["MemoryLockManager"]
