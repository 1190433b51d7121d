"""flowbus's own events about what the API changed (``flowbus.deployment.created``, ...)."""

from __future__ import annotations

from typing import Any

from events.cloudevent import CloudEvent
from gateway.context import Gateway

SOURCE = "flowbus/gateway"


async def emit(gateway: Gateway, type_: str, subject: str, data: Any) -> CloudEvent:
    """Publish one event and wait for its ack (503 upstream if NATS cannot take it)."""
    event = CloudEvent.create(type_, source=SOURCE, subject=subject, data=data)
    await gateway.bus.publish(event)
    return event
