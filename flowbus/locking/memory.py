"""Locks for the threads of one process (Prefect's ``prefect.locking.memory``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flowbus.locking._base import PollingLocks, check_key, not_held

logger = logging.getLogger("flowbus.locking.memory")


class MemoryLockManager(PollingLocks):
    """In-process locks; a lock with a ``hold_timeout`` lapses after it.

    Every ``MemoryLockManager()`` of a process shares one table, as in Prefect. A
    pickled manager unpickles as that process's manager: the locks travel with it only
    into a forked child, which inherits the table (pickling one that holds locks logs
    a warning saying so).
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
                raise not_held(key, holder)
            del self._held[key]

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        with self._mutex:
            held = sum(1 for key in list(self._held) if self._live(key) is not None)
        if held:
            logger.warning(
                "Serializing MemoryLockManager with %d active lock(s). Lock information will not "
                "be available after deserialization in another process (a forked child inherits it).",
                held,
            )
        return (type(self), ())

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
