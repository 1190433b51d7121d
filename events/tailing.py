"""Reading the events stream by type pattern: live (:func:`tail`) or what is stored
(:func:`stored`), oldest first. :class:`events.bus.Bus` exposes both.

:func:`stored` ends at the last matching event stored, which it learns from
JetStream (the messages still pending for its consumer) rather than from a pause in
delivery, so a loaded server never cuts a page short and an idle one never waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime

from nats.js import JetStreamContext, api

from events import subjects
from events.cloudevent import CloudEvent, decode
from events.layout import Layout

# The longest wait for the next stored message once JetStream said more are pending:
# only a lost connection takes this long.
STALL_SECONDS = 30.0


async def tail(
    js: JetStreamContext, layout: Layout, pattern: str = "*", *, since: datetime | None = None
) -> AsyncIterator[CloudEvent]:
    """Events matching ``pattern`` as they arrive, from ``since`` if given, else new ones."""
    sub = await _subscribe(js, layout, pattern, since)
    try:
        async for msg in sub.messages:
            event = decode(msg.data)
            if subjects.type_matches(pattern, event.type):
                yield event
    finally:
        await sub.unsubscribe()


async def stored(
    js: JetStreamContext, layout: Layout, pattern: str, *, since: datetime, most: int | None = None
) -> AsyncGenerator[CloudEvent, None]:
    """The stored events matching ``pattern`` from ``since``, oldest first, ending with
    the last one stored (events stored while reading may come too), or after ``most``."""
    sub = await _subscribe(js, layout, pattern, since)
    count = 0
    try:
        info = await sub.consumer_info()
        if not info.num_pending and not (info.delivered and info.delivered.consumer_seq):
            return
        messages = sub.messages
        while True:
            msg = await asyncio.wait_for(anext(messages), STALL_SECONDS)
            event = decode(msg.data)
            if subjects.type_matches(pattern, event.type):
                yield event
                count += 1
            if not msg.metadata.num_pending or (most is not None and count >= most):
                return
    except TimeoutError:
        return
    finally:
        await sub.unsubscribe()


async def _subscribe(
    js: JetStreamContext, layout: Layout, pattern: str, since: datetime | None
) -> JetStreamContext.PushSubscription:
    subjects.check_pattern(pattern)
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME if since else api.DeliverPolicy.NEW,
        opt_start_time=since,
    )
    return await js.subscribe(
        subjects.filter_subject(layout.namespace, pattern), stream=layout.events_stream,
        ordered_consumer=True, config=config,
    )
