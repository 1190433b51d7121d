"""Reading a consumer in tests: ``Consumer.fetch`` returns as soon as something is there.

A fetch is answered by the first messages that arrive, not by ``n`` of them, so a test
that wants several messages (or everything stored) fetches until it has them.
"""

from __future__ import annotations

import time

from events.consumer import Consumer, Delivery


async def fetch_n(consumer: Consumer, n: int, *, within: float = 30.0) -> list[Delivery]:
    """Exactly the first ``n`` messages the consumer delivers, or fewer after ``within`` s."""
    got: list[Delivery] = []
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        got.extend(await consumer.fetch(n - len(got), max_wait=min(1.0, within)))
    return got


async def fetch_stored(consumer: Consumer, *, quiet: float = 1.0,
                       within: float = 30.0) -> list[Delivery]:
    """Every message until a fetch waits ``quiet`` s and finds nothing more."""
    got: list[Delivery] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        batch = await consumer.fetch(1000, max_wait=quiet)
        if not batch:
            break
        got.extend(batch)
    return got
