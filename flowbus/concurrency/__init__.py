"""Global concurrency and rate limits: :mod:`flowbus.concurrency.sync` and
:mod:`flowbus.concurrency.asyncio` (Prefect's ``prefect.concurrency`` modules).

``concurrency`` here is the sync context manager, as documented in
docs/orchestrator.md: ``with concurrency("db", occupy=1): ...``.
"""

from flowbus.concurrency._slots import (
           AcquireConcurrencySlotTimeoutError,
           ConcurrencySlotAcquisitionError,
)
from flowbus.concurrency.sync import concurrency, rate_limit

__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError",
           "concurrency", "rate_limit"]
