"""Signed webhook deliveries already accepted, shared by every gateway process.

A timestamped signature (Stripe, Slack) is accepted once: its key, :func:`replay_key`,
is what the signature covers (the webhook, the provider, the signed timestamp and the
body's SHA-256), so a delivery re-sent with its signature header re-spelt is the same
one. :func:`claim_delivery` creates that key in the ``<namespace>-webhook-replays``
bucket with a time-to-live of twice the signature tolerance (longer than any timestamp
a gateway accepts), so a replay sent to another gateway replica or process is refused
too. The create is compare-and-set: of two gateways receiving the same delivery at
once, exactly one wins.
"""

from __future__ import annotations

import hashlib

from events.errors import AlreadyExists
from events.kv import KV


def replay_key(slug: str, provider: str, timestamp: str, body: bytes) -> str:
    """The bucket key of one signed delivery (a valid KV key whatever the inputs)."""
    digest = hashlib.sha256()
    for part in (slug.encode(), provider.encode(), timestamp.encode(), hashlib.sha256(body).digest()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return f"{provider}.{digest.hexdigest()}"


async def claim_delivery(kv: KV, key: str, tolerance: float) -> bool:
    """True the first time ``key`` is claimed within ``2 * tolerance`` seconds, else False."""
    try:
        await kv.create(key, b"1", ttl=max(2 * tolerance, 1.0))
    except AlreadyExists:
        return False
    return True
