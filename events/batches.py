"""Pipelined publishes of several batches (each bound for one stream), one outcome per batch.

Every message asks JetStream for its own ack, so a message refused or lost alone (a
stream without a leader for a moment, in a cluster) is seen, never covered by a later
message's ack. The acks come back pipelined on the bus's reply subscription
(:meth:`events.bus.Bus.publish_raw_each`): no round trip per message.
"""

from __future__ import annotations

from collections.abc import Sequence

from events.bus import Ack, Bus
from events.errors import FlowbusError

Message = tuple[str, bytes, dict[str, str] | None]


async def publish_batches(bus: Bus, batches: Sequence[Sequence[Message]]) -> list[Ack | FlowbusError]:
    """Publish ``batches`` pipelined on ``bus``'s connection; one outcome per non-empty
    batch, in order: the first error JetStream answered for one of its messages, else
    its last message's ack. Raises :class:`~events.errors.BusUnavailable` when the acks
    do not come."""
    batches = [b for b in batches if b]
    if not batches:
        return []
    flat = [message for batch in batches for message in batch]
    outcomes = await bus.publish_raw_each(flat)
    out: list[Ack | FlowbusError] = []
    start = 0
    for batch in batches:
        mine = outcomes[start : start + len(batch)]
        start += len(batch)
        out.append(next((o for o in mine if isinstance(o, FlowbusError)), mine[-1]))
    return out


__all__ = ["publish_batches"]
