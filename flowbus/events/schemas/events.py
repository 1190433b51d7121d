"""Prefect's event model (``prefect.events.schemas.events``).

flowbus's events are CloudEvents (:mod:`events.cloudevent`); :class:`Event` is the
shape Prefect's code builds, and :meth:`Event.from_cloudevent` reads one::

    Event(event="my-app.order.shipped", resource={"flowbus.resource.id": "order/42"})
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

RESOURCE_ID_LABELS = ("flowbus.resource.id", "prefect.resource.id")


class Event(BaseModel):
    """An event as Prefect describes one: what happened, to which resource, when."""

    model_config = ConfigDict(extra="forbid")

    occurred: datetime = Field(default_factory=lambda: datetime.now(UTC))
    event: str = Field(min_length=1, max_length=1024)
    resource: dict[str, str]
    related: list[dict[str, str]] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    follows: str | None = None

    @field_validator("resource")
    @classmethod
    def _has_id(cls, value: dict[str, str]) -> dict[str, str]:
        if not any(value.get(k) for k in RESOURCE_ID_LABELS):
            raise ValueError("resource needs a 'flowbus.resource.id' (or 'prefect.resource.id') label")
        return value

    @field_validator("id", "follows", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @property
    def resource_id(self) -> str:
        return next(self.resource[k] for k in RESOURCE_ID_LABELS if self.resource.get(k))

    @classmethod
    def from_cloudevent(cls, cloud_event: Any) -> Event:
        """The Event a flowbus CloudEvent (as :func:`flowbus.events.emit_event` makes them) carries."""
        data = dict(cloud_event.data or {}) if isinstance(cloud_event.data, dict) else {}
        labels = {"flowbus.resource.id": cloud_event.subject or cloud_event.source, **data.pop("resource", {})}
        return cls(occurred=cloud_event.time, event=cloud_event.type, resource=labels,
                   related=data.pop("related", []), follows=data.pop("follows", None), payload=data,
                   id=cloud_event.id)  # fmt: skip


class ResourceSpecification(dict[str, "str | list[str]"]):
    """Labels a trigger's ``match`` / ``match_related`` looks for (a plain mapping)."""


__all__ = ["Event", "ResourceSpecification"]
