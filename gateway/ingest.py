"""CloudEvents over HTTP: ``POST /events`` (structured, binary, batch) and the webhook handshake.

The answer is 202 with the event ids only once JetStream acknowledged every
event; a retried request with the same (source, id) is stored once, because the
bus derives the message id from both. A batch is all or nothing: one bad event
rejects it, naming its index.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from aiohttp import web

from events.cloudevent import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    decode,
    decode_batch,
    encode,
    from_binary,
    is_binary_mode,
)
from events.errors import BusUnavailable, EventTooLarge, InvalidEvent
from events.subjects import check_outside_type
from gateway.auth import Scope
from gateway.context import Gateway, gateway_of
from gateway.problems import Problem


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def check_size(gateway: Gateway, events: Sequence[CloudEvent]) -> None:
    """413 naming the event when one is over the per-event limit."""
    own, bus = gateway.settings.event_max_bytes, gateway.bus.settings.event_max_bytes
    limit = min(own, bus)
    setting = "FLOWBUS_GATEWAY_EVENT_MAX_BYTES" if own <= bus else "FLOWBUS_EVENT_MAX_BYTES"
    for index, event in enumerate(events):
        try:
            encode(event, limit)
        except EventTooLarge as exc:
            gateway.metrics.events_rejected.labels("too_large").inc()
            where = f"event [{index}]" if len(events) > 1 else "the event"
            raise Problem(
                413, f"{where} is {exc.size} bytes encoded, over the per-event limit of "
                f"{limit} bytes (setting {setting})",
                index=index, size=exc.size, limit=limit,
            ) from None


def refuse_reserved(gateway: Gateway, events: Sequence[CloudEvent]) -> None:
    """403 naming the event when one claims a control-plane (``flowbus.*``) type."""
    for index, event in enumerate(events):
        try:
            check_outside_type(event.type)
        except InvalidEvent as exc:
            gateway.metrics.events_rejected.labels("reserved_type").inc()
            where = f"event [{index}]" if len(events) > 1 else "the event"
            raise Problem(403, f"{where}: attribute 'type' {exc.reason}",
                          index=index, attribute="type") from None


async def publish_events(gateway: Gateway, events: Sequence[CloudEvent], mode: str) -> list[str]:
    """Publish and wait for every ack; the ids accepted. 503 when NATS cannot take them."""
    bus = gateway.bus
    # The bus encodes each event once and refuses those over its own limit; encode here
    # first only when the gateway's limit is the stricter one.
    if gateway.settings.event_max_bytes < bus.settings.event_max_bytes:
        check_size(gateway, events)
    if not bus.is_connected:
        gateway.metrics.events_rejected.labels("unavailable").inc()
        raise BusUnavailable("NATS is not connected")
    started = time.perf_counter()
    try:
        if len(events) == 1:
            acks = [await bus.publish(events[0])]
        else:
            acks = await bus.publish_many(events)
    except EventTooLarge:
        check_size(gateway, events)  # names the event at fault
        raise
    except BusUnavailable:
        gateway.metrics.events_rejected.labels("unavailable").inc()
        raise
    metrics = gateway.metrics
    metrics.child(metrics.publish_latency, "single" if len(events) == 1 else "batch").observe(
        time.perf_counter() - started)
    duplicates = sum(1 for a in acks if a.duplicate)
    metrics.child(metrics.events_accepted, mode).inc(len(acks) - duplicates)
    if duplicates:
        gateway.metrics.events_duplicate.inc(duplicates)
    return [e.id for e in events]


def decode_request(headers: Mapping[str, str], body: bytes) -> tuple[list[CloudEvent], str]:
    """The events of a CloudEvents HTTP request and its mode; 415 for an unknown content type.

    An event without ``time`` gets the time it was received (UTC), one for the request.
    """
    received = datetime.now(UTC)
    if is_binary_mode(headers):
        return [from_binary(headers, body, received=received)], "binary"
    media = media_type(headers)
    if media == STRUCTURED_CONTENT_TYPE:
        return [decode(body, received=received)], "structured"
    if media == BATCH_CONTENT_TYPE:
        events = decode_batch(body, received=received)
        if not events:
            raise InvalidEvent("batch", "is empty; send at least one event")
        return events, "batch"
    shown = media or "none"
    raise Problem(
        415,
        f"Content-Type {shown!r} is not a CloudEvents mode: use {STRUCTURED_CONTENT_TYPE}, "
        f"{BATCH_CONTENT_TYPE}, or binary mode (ce-specversion and other ce-* headers)",
    )


async def post_events(request: web.Request) -> web.Response:
    """``POST /events``: store the CloudEvent(s), then answer 202 with their ids."""
    gateway = gateway_of(request)
    principal = await gateway.auth.require(request.headers, Scope.INGEST)
    body = await request.read()
    try:
        events, mode = decode_request(request.headers, body)
    except (InvalidEvent, Problem):
        gateway.metrics.events_rejected.labels("invalid").inc()
        raise
    if gateway.settings.auth and len(events) > 1:
        # The rate limit counts events, not requests: the request paid for the first.
        gateway.auth.limit(principal.id, "this API key", cost=len(events) - 1)
    refuse_reserved(gateway, events)
    ids = await publish_events(gateway, events, mode)
    return web.json_response({"ids": ids}, status=202)


async def options_events(request: web.Request) -> web.Response:
    """The CloudEvents HTTP webhook validation handshake (``WebHook-Request-Origin``)."""
    settings = gateway_of(request).settings
    origin = request.headers.get("WebHook-Request-Origin")
    headers = {"Allow": "OPTIONS, POST"}
    if origin is None:
        return web.Response(status=204, headers=headers)
    allowed = settings.webhook_allowed_origins
    if "*" not in allowed and origin not in allowed:
        raise Problem(403, f"origin {origin[:200]!r} may not send events here")
    headers["WebHook-Allowed-Origin"] = "*" if "*" in allowed else origin
    if settings.webhook_allowed_rate is not None:
        headers["WebHook-Allowed-Rate"] = str(settings.webhook_allowed_rate)
    return web.Response(status=200, headers=headers)
