"""``/api/v1/events``: recent events, and live ones over Server-Sent Events or WebSocket.

Both read ``FLOWBUS_EVENTS`` through :meth:`events.bus.Bus.tail`, filtered by a
type pattern (``*`` matches any characters, dots included). A live stream holds
at most ``STREAM_BUFFER`` events for a slow client; past that it stops reading
from NATS until the client catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.cloudevent import CloudEvent, to_dict
from events.errors import InvalidEvent
from events.subjects import check_pattern
from gateway.api.routing import ApiRouter, Call
from gateway.auth import Scope
from gateway.context import closing_of

router = ApiRouter()
STREAM_BUFFER = 1000


class StreamQuery(BaseModel):
    """Which events to stream."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(default="*", max_length=255,
                         description="event type pattern; '*' matches any characters")

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            return check_pattern(value)
        except InvalidEvent as exc:
            raise ValueError(exc.reason) from None


class EventQuery(StreamQuery):
    """Which recent events to list (oldest first)."""

    since: datetime | None = Field(default=None,
                                   description="stored at or after (default: an hour ago)")
    until: datetime | None = Field(default=None, description="stop at events after this time")
    limit: int = Field(default=100, ge=1, le=1000, description="most events returned")

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset, e.g. 2024-05-01T12:00:00Z")
        return value


class EventList(BaseModel):
    """Recent events as CloudEvents JSON."""

    items: list[dict[str, Any]] = Field(description="events, oldest first")
    next_since: datetime | None = Field(
        description="pass as ?since= for the next page (null when this page is not full)"
    )


@router.route("GET", "/events", scope=Scope.READ, summary="Recent events, filtered by type and time",
              query=EventQuery, response=EventList)
async def list_events(call: Call) -> EventList:
    query: EventQuery = call.query
    since = query.since or datetime.now(UTC) - timedelta(hours=1)
    items: list[dict[str, Any]] = []
    last_time: datetime | None = None
    reading = call.gateway.bus.stored(query.pattern, since=since)
    try:
        async for event in reading:
            if query.until is not None and event.time is not None and event.time > query.until:
                break
            items.append(to_dict(event))
            last_time = event.time
            if len(items) == query.limit:
                break
    finally:
        await reading.aclose()
    next_since = None
    if len(items) == query.limit and last_time is not None:
        next_since = last_time + timedelta(microseconds=1)
    return EventList(items=items, next_since=next_since)


async def _pump(call: Call, pattern: str, queue: asyncio.Queue[CloudEvent]) -> None:
    async for event in call.gateway.bus.tail(pattern):
        await queue.put(event)


async def _relay(
    call: Call, pattern: str, send: Callable[[CloudEvent | None], Awaitable[None]],
    done: Callable[[], bool],
) -> None:
    """Feed matching events to ``send`` (None: a keep-alive) until ``done`` or shutdown."""
    queue: asyncio.Queue[CloudEvent] = asyncio.Queue(STREAM_BUFFER)
    pump = asyncio.create_task(_pump(call, pattern, queue))
    closing = closing_of(call.request)
    heartbeat = call.gateway.settings.stream_heartbeat_seconds
    quiet_since = time.monotonic()
    try:
        while not closing.is_set() and not done() and not pump.done():
            try:
                event = await asyncio.wait_for(queue.get(), min(heartbeat, 0.5))
            except TimeoutError:
                if time.monotonic() - quiet_since >= heartbeat:
                    await send(None)
                    quiet_since = time.monotonic()
                continue
            await send(event)
            quiet_since = time.monotonic()
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


@router.route("GET", "/events/stream", scope=Scope.READ,
              summary="Live events as Server-Sent Events (text/event-stream)",
              query=StreamQuery, stream="text/event-stream")
async def stream_events_sse(call: Call) -> web.StreamResponse:
    query: StreamQuery = call.query
    with call.gateway.stream_slot():
        return await _serve_sse(call, query)


async def _serve_sse(call: Call, query: StreamQuery) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    await response.prepare(call.request)
    await response.write(b": connected\n\n")

    async def send(event: CloudEvent | None) -> None:
        if event is None:
            await response.write(b": keep-alive\n\n")
            return
        data = json.dumps(to_dict(event), default=str)
        await response.write(f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode())

    await _relay(call, query.pattern, send, lambda: False)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


@router.route("GET", "/events/ws", scope=Scope.READ,
              summary="Live events over a WebSocket (one CloudEvents JSON text message each)",
              query=StreamQuery, stream="websocket")
async def stream_events_ws(call: Call) -> web.StreamResponse:
    query: StreamQuery = call.query
    with call.gateway.stream_slot():
        return await _serve_ws(call, query)


async def _serve_ws(call: Call, query: StreamQuery) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=call.gateway.settings.stream_heartbeat_seconds)
    await ws.prepare(call.request)

    async def read() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break

    reader = asyncio.create_task(read())

    async def send(event: CloudEvent | None) -> None:
        if event is not None:
            await ws.send_str(json.dumps(to_dict(event), default=str))

    try:
        await _relay(call, query.pattern, send, lambda: reader.done() or ws.closed)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await ws.close()
    return ws
