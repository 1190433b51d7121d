"""Global concurrency and rate limits for sync code (Prefect's ``prefect.concurrency.sync``).

::

    from flowbus.concurrency.sync import concurrency, rate_limit

    with concurrency("db", occupy=1):
        write_rows()

    rate_limit("github-api")   # waits for a slot that decays by itself

A limit is created with ``flowbus concurrency-limit create NAME --limit N`` (or the
API). A limit that does not exist is skipped with a warning, unless ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flowbus.concurrency._slots import (
    DEFAULT_LEASE_SECONDS,
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    acquire,
)


@contextmanager
def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = DEFAULT_LEASE_SECONDS,
    strict: bool = False,
) -> Iterator[None]:
    """Hold ``occupy`` slots of every limit in ``names`` for the block.

    Waits for free slots (``AcquireConcurrencySlotTimeoutError`` past
    ``timeout_seconds``). Slots are leases of ``lease_duration`` seconds renewed while
    held, so a killed process frees them when the lease expires. ``max_retries`` is
    accepted for Prefect compatibility; waiting is bounded by ``timeout_seconds``.
    """
    held = acquire(names, occupy, timeout_seconds, strict, lease_duration=lease_duration)
    try:
        yield
    finally:
        if held is not None:
            held.release()


def rate_limit(
    names: str | list[str], occupy: int = 1, timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Wait until ``occupy`` slots of every limit in ``names`` are free, and take them.

    The slots are never given back: each frees itself after ``1 / slot_decay_per_second``
    seconds, so at most ``limit`` calls pass per decay period. The limits need a slot
    decay (``--slot-decay-per-second``).
    """
    acquire(names, occupy, timeout_seconds, strict, rate_limit=True)


__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError",
           "concurrency", "rate_limit"]
