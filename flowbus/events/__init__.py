"""Emitting events from flows, and the trigger classes of deployments (Prefect 3 names).

::

    from flowbus.events import DeploymentEventTrigger, emit_event

    emit_event("com.example.order.shipped",
               resource={"flowbus.resource.id": "order/42", "region": "eu"},
               payload={"carrier": "dhl"})

    trigger = DeploymentEventTrigger(expect={"com.example.order.shipped"},
                                     parameters={"order": "{{ event.subject }}"})

An event becomes a CloudEvent: ``event`` is its type, the resource id
(``flowbus.resource.id`` or ``prefect.resource.id``) its ``subject``, the payload
its ``data``, with the resource's other labels under ``data.resource`` and the
related resources under ``data.related`` (where triggers' ``match`` and
``match_related`` look for them). With ``FLOWBUS_NATS_URL`` set it is published
through the SDK's NATS connection (buffered, off the caller's path); with no
server it stays local (or goes to ``FLOWBUS_EVENTS_FILE``) and is returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from events.cloudevent import CloudEvent, encode, to_dict
from events.triggers import (
    CompoundTrigger,
    DeploymentCompoundTrigger,
    DeploymentEventTrigger,
    DeploymentSequenceTrigger,
    EventTrigger,
    Posture,
    SequenceTrigger,
)
from flowbus.events.schemas.events import Event, ResourceSpecification

__all__ = [
    "CompoundTrigger",
    "DeploymentCompoundTrigger",
    "DeploymentEventTrigger",
    "DeploymentSequenceTrigger",
    "Event",
    "EventTrigger",
    "Posture",
    "ResourceSpecification",
    "SequenceTrigger",
    "emit_event",
]

SOURCE = "flowbus/sdk"


@cache
def _max_bytes() -> int:
    from events.settings import NatsSettings

    return NatsSettings().event_max_bytes
RESOURCE_ID_LABELS = ("flowbus.resource.id", "prefect.resource.id")


def emit_event(
    event: str,
    resource: Mapping[str, str],
    payload: Mapping[str, Any] | None = None,
    related: Sequence[Mapping[str, str]] | None = None,
    id: str | None = None,
    occurred: datetime | None = None,
    follows: Any = None,
) -> CloudEvent:
    """Emit an event about ``resource``; returns it (published when a server is configured).

    Raises :class:`events.errors.InvalidEvent` naming the attribute at fault (a bad
    event name, a time without a zone, ...), :class:`events.errors.EventTooLarge`
    past ``FLOWBUS_EVENT_MAX_BYTES``, and ``ValueError`` for a resource with
    no id or a payload that uses the reserved keys ``resource`` / ``related`` /
    ``follows``. ``follows`` (an :class:`~flowbus.events.schemas.events.Event`, a
    CloudEvent or an id) is recorded as ``data.follows``, the id of the event this one
    follows.
    """
    from flowbus import _sink

    labels = dict(resource)
    resource_id = next((labels[k] for k in RESOURCE_ID_LABELS if labels.get(k)), None)
    if resource_id is None:
        raise ValueError(
            f"resource {labels!r} has no id; give it a 'flowbus.resource.id' label"
        )
    data: dict[str, Any] = dict(payload or {})
    clash = {"resource", "related", "follows"} & set(data)
    if clash:
        raise ValueError(f"payload keys {sorted(clash)} are reserved for the resource, related and follows")
    if follows is not None:
        data["follows"] = str(getattr(follows, "id", follows))
    extra = {k: v for k, v in labels.items() if k not in RESOURCE_ID_LABELS}
    if extra:
        data["resource"] = extra
    if related:
        data["related"] = [dict(r) for r in related]
    cloud_event = CloudEvent.create(
        event, source=SOURCE, subject=resource_id, data=data, id=id, time=occurred,
        datacontenttype="application/json",
    )
    encode(cloud_event, _max_bytes())  # refuse now what NATS would refuse later, off our path
    _sink.configure_from_env()
    sink = _sink.get_event_sink()
    if _sink.enabled:
        sink.emit_event(to_dict(cloud_event))
    return cloud_event
