"""Stopping asyncio tasks for sure.

On Python 3.11, ``asyncio.wait_for`` returns the inner result instead of raising when a
cancellation arrives in the same loop turn as that result, and nats-py awaits
``wait_for`` on every request. A task cancelled at that moment swallows the
cancellation and goes on waiting, so a shutdown that cancels it once and then waits
can hang for ever. :func:`cancel_and_wait` cancels again until the tasks have ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

_RETRY_SECONDS = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one of them has ended, cancelling again
    every half-second while any is still running (a swallowed cancellation)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RETRY_SECONDS)
