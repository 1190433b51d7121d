"""The events pages: recent and live events filtered by type pattern and source, and one event.

Events are read from ``FLOWBUS_EVENTS`` through :meth:`events.bus.Bus.tail`, as the
REST API's ``/api/v1/events`` does. An event's page finds it by type, id and time
(its link carries all three), and lists the runs it triggered from the run index.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from events.cloudevent import CloudEvent, to_dict
from events.errors import InvalidEvent
from events.subjects import check_pattern
from gateway.api.flow_runs import FlowRunQuery, query_runs
from gateway.context import closing_of, gateway_of
from gateway.problems import Problem
from gateway.ui.pages import page
from gateway.ui.render import environment, render
from gateway.ui.session import Viewer

RECENT_WINDOW = timedelta(minutes=15)
RECENT_READ = 1000  # events read to show the newest of the window
SHOWN = 100
_FIND_WINDOW = timedelta(seconds=60)  # an event comes before the runs it causes
_FIND_READ = 2000
_LIVE_BUFFER = 256
AUTOMATION_EVENTS = "flowbus.automation.*"
_FIRINGS_READ = 5000  # automation events read after the event, at most
_SLACK = timedelta(seconds=2)  # the event's time comes from its sender's clock


def _filters(request: web.Request) -> tuple[str, str | None]:
    pattern = request.query.get("pattern") or "*"
    source = request.query.get("source") or None
    if len(pattern) > 255 or (source is not None and len(source) > 1024):
        raise Problem(400, "the type pattern is limited to 255 characters, the source to 1024")
    try:
        return check_pattern(pattern), source
    except InvalidEvent as exc:
        raise Problem(400, f"type pattern {pattern[:100]!r}: {exc.reason}") from None


def event_link(event: CloudEvent) -> str:
    stamp = event.time.isoformat() if event.time else ""
    return "/ui/event?" + urlencode({"type": event.type, "id": event.id, "time": stamp})


@page
async def events_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    pattern, source = _filters(request)
    bus = gateway_of(request).bus
    found: list[CloudEvent] = []
    async for event in bus.stored(pattern, since=datetime.now(UTC) - RECENT_WINDOW, most=RECENT_READ):
        if source is None or event.source == source:
            found.append(event)
    newest = list(reversed(found[-SHOWN:]))
    live = "/ui/events/live?" + urlencode({"pattern": pattern, **({"source": source} if source else {})})
    return render("events.html", viewer=viewer, nav="events", events=newest, pattern=pattern,
                  source=source or "", live=live, link=event_link, window=RECENT_WINDOW)


@page
async def events_stream(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """Each new matching event as an ``event`` message carrying its table row."""
    pattern, source = _filters(request)
    gateway = gateway_of(request)
    closing = closing_of(request)
    row = environment().get_template("_event_row.html")
    queue: asyncio.Queue[CloudEvent] = asyncio.Queue(_LIVE_BUFFER)

    async def pump() -> None:
        async for event in gateway.bus.tail(pattern):
            if source is None or event.source == source:
                await queue.put(event)

    with gateway.stream_slot():
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        await response.write(b": connected\n\n")
        reader = asyncio.create_task(pump())
        try:
            while not closing.is_set() and not reader.done():
                try:
                    event = await asyncio.wait_for(queue.get(),
                                                   gateway.settings.stream_heartbeat_seconds)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                html = row.render(event=event, link=event_link)
                data = "\n".join(f"data: {line}" for line in html.splitlines())
                await response.write(f"event: event\n{data}\n\n".encode())
        except ConnectionError:
            pass  # the browser went away
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return response


@page
async def event_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    event_type = request.query.get("type", "")
    event_id = request.query.get("id", "")
    raw_time = request.query.get("time", "")
    if not event_id or len(event_id) > 256:
        raise Problem(404, "an event is named by its type, id and time")
    try:
        check_pattern(event_type)
        when = datetime.fromisoformat(raw_time) if raw_time else None
    except (InvalidEvent, ValueError):
        raise Problem(404, f"no event of type {event_type[:100]!r} at {raw_time[:40]!r}") from None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    event = await _find(request, event_type, event_id, when)
    if event is None:
        raise Problem(404, f"no event {event_id[:100]!r} of type {event_type[:100]!r} is stored "
                      "near that time (it may have aged out of the stream)")
    runs = await query_runs(request, FlowRunQuery(event=event.id, limit=50))
    data: dict[str, Any] = to_dict(event)
    firings, cut = await _firings(request, event)
    return render("event.html", viewer=viewer, nav="events", event=event,
                  json_text=json.dumps(data, indent=2, default=str), runs=runs.items,
                  firings=firings, firings_cut=cut)


async def _firings(request: web.Request, event: CloudEvent) -> tuple[list[CloudEvent], bool]:
    """The automation events (triggered, resolved, action executed or failed) naming
    ``event`` as their triggering event, read from its time on (bounded)."""
    bus = gateway_of(request).bus
    since = (event.time or datetime.now(UTC) - RECENT_WINDOW) - _SLACK
    found: list[CloudEvent] = []
    read = 0
    async for fired in bus.stored(AUTOMATION_EVENTS, since=since, most=_FIRINGS_READ):
        read += 1
        data = fired.data if isinstance(fired.data, dict) else {}
        ref = data.get("triggering_event")
        if (isinstance(ref, dict) and ref.get("id") == event.id
                and ref.get("source") == event.source):
            found.append(fired)
    return found, read >= _FIRINGS_READ


async def _find(request: web.Request, event_type: str, event_id: str,
                when: datetime | None) -> CloudEvent | None:
    bus = gateway_of(request).bus
    since = (when or datetime.now(UTC) - RECENT_WINDOW) - _FIND_WINDOW
    async with contextlib.aclosing(bus.stored(event_type, since=since, most=_FIND_READ)) as reading:
        async for event in reading:
            if event.id == event_id:
                return event
    return None
