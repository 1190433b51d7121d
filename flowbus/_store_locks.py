"""The lock methods of :class:`flowbus.results.ResultStore` (Prefect's ``ResultStore``
locking API): each hands the call to the store's ``lock_manager``.

Example::

    store = ResultStore(lock_manager=MemoryLockManager())
    assert store.acquire_lock("report")          # holder: this host, process and thread
    assert store.is_lock_holder("report")
    store.release_lock("report")
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

from flowbus.exceptions import ConfigurationError

_NO_MANAGER = (
    "Result store is not configured with a lock manager. Please set"
    " a lock manager when creating the result store to enable locking."
)


class StoreLocks:
    lock_manager: Any

    @staticmethod
    def generate_default_holder() -> str:
        """``host:pid:thread id:thread name``, plus the asyncio task's id inside a task."""
        thread = threading.current_thread()
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{thread.name}"
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        return holder if task is None else f"{holder}:{id(task)}"

    def _locks(self) -> Any:
        if self.lock_manager is None:
            raise ConfigurationError(_NO_MANAGER)
        return self.lock_manager

    def acquire_lock(self, key: str, holder: str | None = None, timeout: float | None = None) -> bool:
        """Lock ``key`` for ``holder`` (default: :meth:`generate_default_holder`), waiting
        at most ``timeout`` seconds; ``ConfigurationError`` without a lock manager."""
        return bool(self._locks().acquire_lock(key, holder or self.generate_default_holder(), timeout))

    async def aacquire_lock(self, key: str, holder: str | None = None, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return bool(await self._locks().aacquire_lock(key, holder or self.generate_default_holder(), timeout))

    def release_lock(self, key: str, holder: str | None = None) -> None:
        self._locks().release_lock(key, holder or self.generate_default_holder())

    def is_locked(self, key: str) -> bool:
        return bool(self._locks().is_locked(key))

    def is_lock_holder(self, key: str, holder: str | None = None) -> bool:
        return bool(self._locks().is_lock_holder(key, holder or self.generate_default_holder()))

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return bool(self._locks().wait_for_lock(key, timeout))

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return bool(await self._locks().await_for_lock(key, timeout))
