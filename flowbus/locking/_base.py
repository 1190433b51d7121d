"""What the lock managers share: polling waits, async forms, argument checks."""

from __future__ import annotations

import asyncio
import time


def check_key(key: str, holder: str | None = None) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"lock key must be a non-empty string, got {key!r}")
    if holder is not None and (not isinstance(holder, str) or not holder):
        raise ValueError(f"lock holder must be a non-empty string, got {holder!r}")


def not_held(key: str, holder: str) -> ValueError:
    """The error of releasing a lock ``holder`` does not hold (Prefect's wording)."""
    return ValueError(f"No lock held by {holder} for transaction with key {key}")


class PollingLocks:
    """Waits built on ``_try_acquire`` and ``is_locked``, polled every ``poll`` seconds."""

    poll = 0.02

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        raise NotImplementedError

    def is_locked(self, key: str) -> bool:
        raise NotImplementedError

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        """Take the lock of ``key`` for ``holder``; False when ``acquire_timeout`` passed first."""
        check_key(key, holder)
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try_acquire(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)
        return True

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        check_key(key, holder)
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not await asyncio.to_thread(self._try_acquire, key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.poll)
        return True

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key`` is free; False when ``timeout`` passed first."""
        check_key(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        check_key(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        while await asyncio.to_thread(self.is_locked, key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.poll)
        return True
