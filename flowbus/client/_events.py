"""``read_events`` of the client: Prefect's event filters over ``GET /api/v1/events``.

The gateway lists events by type pattern and time; the client reads every event of
the filter's ``occurred`` window (narrowed by name when the filter allows), applies
the whole filter, orders and pages the result. A window holding more than
``MAX_SCANNED`` events is refused with a message to narrow it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from events.cloudevent import CloudEvent, from_dict
from events.errors import InvalidEvent
from events.subjects import check_pattern
from flowbus.client.schemas.events import EventPage
from flowbus.events.filters import EventFilter, EventOrder
from flowbus.events.schemas.events import Event

MAX_SCANNED = 100_000
_API_PAGE = 1000
_CURSOR_PREFIX = "flowbus-events:"

Request = Callable[..., Awaitable[Any]]


def check_event_filter(value: Any) -> EventFilter:
    if value is None:
        return EventFilter()
    if isinstance(value, EventFilter):
        return value
    if isinstance(value, dict):
        return EventFilter.model_validate(value)
    raise TypeError(f"filter must be an EventFilter (or a dict of its fields), got {type(value).__name__}")


def as_event(cloud_event: CloudEvent) -> Event:
    """The Prefect-shaped view of a stored CloudEvent (its data as the payload when the
    data does not follow :func:`flowbus.events.emit_event`'s layout)."""
    if cloud_event.time is None:
        cloud_event = cloud_event.model_copy(update={"time": datetime.now(UTC)})
    try:
        return Event.from_cloudevent(cloud_event)
    except (ValidationError, TypeError, ValueError):
        data = cloud_event.data if isinstance(cloud_event.data, dict) else {"data": cloud_event.data}
        return Event(occurred=cloud_event.time or datetime.now(UTC), event=cloud_event.type,
                     resource={"flowbus.resource.id": cloud_event.resource}, payload=data,
                     id=cloud_event.id)  # fmt: skip


def _pattern(event_filter: EventFilter) -> str:
    pattern = event_filter.server_pattern()
    try:
        return check_pattern(pattern)
    except InvalidEvent:
        return "*"  # a prefix no event type can have: the filter itself rejects every event


async def _matching(request: Request, event_filter: EventFilter) -> list[Event]:
    window = event_filter.occurred
    since: datetime | None = window.since
    found: list[Event] = []
    scanned = 0
    while since is not None:
        page = await request("GET", "/events", params={
            "pattern": _pattern(event_filter), "since": since.isoformat(),
            "until": window.until.isoformat(), "limit": _API_PAGE,
        })
        items = page.get("items") or []
        scanned += len(items)
        if scanned > MAX_SCANNED:
            raise ValueError(f"more than {MAX_SCANNED} events were stored between {window.since.isoformat()} "
                             f"and {window.until.isoformat()}; narrow the filter's `occurred` window "
                             "or name the events (`event=EventNameFilter(...)`)")
        for item in items:
            event = as_event(from_dict(item))
            if event_filter.includes(event):
                found.append(event)
        next_since = page.get("next_since")
        since = datetime.fromisoformat(next_since) if next_since else None
    if event_filter.resource is not None and event_filter.resource.distinct:
        latest: dict[str, Event] = {}
        for event in found:
            if event.resource_id not in latest or event.occurred >= latest[event.resource_id].occurred:
                latest[event.resource_id] = event
        found = list(latest.values())
    found.sort(key=lambda e: e.occurred, reverse=event_filter.order is EventOrder.DESC)
    return found


def _cursor(event_filter: EventFilter, limit: int, offset: int) -> str:
    state = {"filter": event_filter.model_dump(mode="json"), "limit": limit, "offset": offset}
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


async def read_events(request: Request, event_filter: Any, limit: int, offset: int = 0) -> EventPage:
    """One page of the events ``event_filter`` matches."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    chosen = check_event_filter(event_filter)
    now = datetime.now(UTC)
    if chosen.occurred.until > now:  # pin the window: later pages see the same events
        chosen = chosen.model_copy(update={"occurred": chosen.occurred.model_copy(update={"until": now})})
    found = await _matching(request, chosen)
    end = offset + limit
    return EventPage(events=found[offset:end], total=len(found),
                     next_page=_cursor(chosen, limit, end) if end < len(found) else None)


async def read_events_page(request: Request, next_page: Any) -> EventPage:
    """The page a previous page's ``next_page`` cursor points to."""
    text = str(next_page)
    if not text.startswith(_CURSOR_PREFIX):
        raise ValueError(f"{text[:80]!r} is not a flowbus events cursor (an EventPage's next_page)")
    try:
        state = json.loads(base64.urlsafe_b64decode(text[len(_CURSOR_PREFIX):].encode()))
        event_filter = EventFilter.model_validate(state["filter"])
        limit, offset = int(state["limit"]), int(state["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error, ValidationError):
        raise ValueError(f"{text[:80]!r} is not a valid flowbus events cursor") from None
    if offset < 0:
        raise ValueError("the events cursor has a negative offset")
    return await read_events(request, event_filter, limit, offset)
