"""Pipelined publishes that ask JetStream for one ack per batch, not one per message.

A stream stores the messages of one connection in the order they were sent, so the ack
of a batch's last message means the stream has processed the whole batch. For
messages a stream takes as they are (checked before, no expected-revision headers),
such as the run events and log lines a task worker publishes, asking an ack for the
last one only cuts the acks nats-server sends and the client reads from one per
message to one per batch. Only the last message's own refusal is seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from events.bus import Ack, Bus, _Window
from events.errors import BusUnavailable, FlowbusError

Message = tuple[str, bytes, dict[str, str] | None]


async def publish_batches(bus: Bus, batches: Sequence[Sequence[Message]]) -> list[Ack | FlowbusError]:
    """Publish ``batches`` (each bound for one stream) pipelined on ``bus``'s connection,
    acked per batch; one outcome per non-empty batch, in order. Raises
    :class:`~events.errors.BusUnavailable` when the acks do not come."""
    batches = [b for b in batches if b]
    if not batches:
        return []
    # events/ is the one package that talks to NATS itself; the acks arrive on the
    # bus's shared reply subscription, matched by window and index as its own are.
    replies = await bus._reply_inbox()
    window = _Window(len(batches), asyncio.get_running_loop().create_future())
    wid = str(next(bus._window_ids))
    bus._windows[wid] = window
    try:
        prefix = f"{replies}.{wid}."
        for index, batch in enumerate(batches):
            last = len(batch) - 1
            for position, (subject, body, headers) in enumerate(batch):
                await bus._nc.publish(subject, body, headers=headers,
                                      reply=f"{prefix}{index}" if position == last else "")
        async with asyncio.timeout(bus.settings.nats_request_timeout):
            await window.done
    except (NatsTimeout, TimeoutError, NoRespondersError, ConnectionClosedError) as exc:
        raise BusUnavailable(f"JetStream did not acknowledge {len(batches)} batch(es) "
                             f"({type(exc).__name__}); NATS is unreachable or overloaded") from None
    finally:
        del bus._windows[wid]
    return [r for r in window.results if r is not None]


__all__ = ["publish_batches"]
