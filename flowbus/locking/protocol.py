"""The interface every lock manager offers (Prefect's ``prefect.locking.protocol``)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class LockManager(Protocol):
    """Exclusive locks on string keys, each held by a named holder.

    ``acquire_timeout``: seconds to wait for a held lock (None: forever, 0: do not
    wait). ``hold_timeout``: seconds after which the lock lapses on its own (None:
    until released).
    """

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool: ...

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool: ...

    def release_lock(self, key: str, holder: str) -> None: ...

    def is_locked(self, key: str) -> bool: ...

    def is_lock_holder(self, key: str, holder: str) -> bool: ...

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool: ...

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool: ...  # noqa: ASYNC109


__all__ = ["LockManager"]
