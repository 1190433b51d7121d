"""Global concurrency and rate limits for async code (Prefect's ``prefect.concurrency.asyncio``).

::

    from flowbus.concurrency.asyncio import concurrency, rate_limit

    async with concurrency("db", occupy=2, timeout_seconds=30):
        await write_rows()

    await rate_limit("github-api")

Same behaviour as :mod:`flowbus.concurrency.sync`; waiting never blocks the event loop.
"""

from __future__ import annotations

import asyncio as _asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flowbus.concurrency._slots import (
    DEFAULT_LEASE_SECONDS,
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    acquire,
)


@asynccontextmanager
async def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = DEFAULT_LEASE_SECONDS,
    strict: bool = False,
) -> AsyncIterator[None]:
    """Hold ``occupy`` slots of every limit in ``names`` for the block (see the sync version)."""
    held = await _asyncio.to_thread(acquire, names, occupy, timeout_seconds, strict,
                                    lease_duration=lease_duration)
    try:
        yield
    finally:
        if held is not None:
            await _asyncio.to_thread(held.release)


async def rate_limit(
    names: str | list[str], occupy: int = 1, timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Wait for and take decaying slots of every limit in ``names`` (see the sync version)."""
    await _asyncio.to_thread(acquire, names, occupy, timeout_seconds, strict, rate_limit=True)


__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError",
           "concurrency", "rate_limit"]
