"""Filters over events (Prefect's ``prefect.events.filters``), for ``client.read_events``.

::

    from flowbus.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    async with get_client() as client:
        page = await client.read_events(
            filter=EventFilter(occurred=EventOccurredFilter(since=an_hour_ago),
                               event=EventNameFilter(prefix=["prefect.flow-run."])),
            limit=20,
        )

Every field given must match (lists of ``related`` / ``any_resource`` filters are
ANDed), as in Prefect. The client applies the filter to the events the gateway's
``GET /api/v1/events`` lists for the ``occurred`` window.

**Prefect's names.** flowbus's own events are named ``flowbus.<kind>.*`` where
Prefect's are ``prefect.<kind>.*``, and the resource of a flow-run event is
``flowbus.flow-run.<id>``. A filter that names ``prefect.flow-run.``,
``prefect.task-run.``, ``prefect.deployment.``, ``prefect.automation.``,
``prefect.flow.``, ``prefect.tag.`` or ``prefect.asset.`` (in event names, prefixes,
resource ids or id prefixes) means flowbus's ``flowbus.`` name of the same thing; the
events it reads keep their flowbus names.

**Related resources.** An event's related resources are the dicts in its
``data.related`` (what :func:`flowbus.events.emit_event` writes). A
``flowbus.flow-run.*`` state event carries none; for it the flow
(``flowbus.flow.<name>``, role ``flow``), the deployment
(``flowbus.deployment.<id>``, role ``deployment``) and each tag
(``flowbus.tag.<tag>``, role ``tag``) of its run stand in, as in Prefect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.prefect_names import PREFECT_FAMILIES as PREFECT_FAMILIES
from events.prefect_names import from_prefect_name
from flowbus.events._automation_filters import (
    AutomationFilter,
    AutomationFilterCreated,
    AutomationFilterName,
    AutomationFilterTags,
)
from flowbus.events.schemas.events import RESOURCE_ID_LABELS, Event

ROLE_LABELS = ("flowbus.resource.role", "prefect.resource.role")
#: Resource labels to match (a ``ResourceSpecification`` is one): a value, or a list of values.
Labels = dict[str, str | list[str]]


def flowbus_name(name: str) -> str:
    """``name`` with a Prefect ``prefect.<family>.`` prefix turned into flowbus's ``flowbus.``."""
    return from_prefect_name(name)


def _names(values: Iterable[str]) -> list[str]:
    return [flowbus_name(v) for v in values]


def _label(resource: Mapping[str, Any], label: str) -> str | None:
    if label in RESOURCE_ID_LABELS:
        found = next((resource[k] for k in RESOURCE_ID_LABELS if resource.get(k)), None)
    elif label in ROLE_LABELS:
        found = next((resource[k] for k in ROLE_LABELS if resource.get(k)), None)
    else:
        found = resource.get(label)
    return None if found is None else str(found)


def _value_matches(expected: str, value: str | None) -> bool:
    if value is None:
        return False
    positive = not expected.startswith("!")
    expected = expected if positive else expected[1:]
    if expected.endswith("*"):
        found = value.startswith(flowbus_name(expected[:-1]))
    else:
        found = value in (expected, flowbus_name(expected))
    return found if positive else not found


def labels_match(spec: Mapping[str, str | list[str]], resource: Mapping[str, Any]) -> bool:
    """Prefect's label matching: every label is present and matches one of its expected
    values (a trailing ``*`` matches a prefix, a leading ``!`` negates that value)."""
    for label, expected in spec.items():
        values = [expected] if isinstance(expected, str) else list(expected)
        value = _label(resource, label)
        if not any(_value_matches(v, value) for v in values):
            return False
    return True


def related_of(event: Event) -> list[dict[str, str]]:
    """The event's related resources (see the module's docstring)."""
    if event.related or not event.event.startswith("flowbus.flow-run."):
        return [dict(r) for r in event.related]
    data = event.payload
    related: list[dict[str, str]] = []
    if data.get("flow_name"):
        related.append({"flowbus.resource.id": f"flowbus.flow.{data['flow_name']}",
                        "flowbus.resource.role": "flow", "flowbus.resource.name": str(data["flow_name"])})
    if data.get("deployment_id"):
        related.append({"flowbus.resource.id": f"flowbus.deployment.{data['deployment_id']}",
                        "flowbus.resource.role": "deployment",
                        "flowbus.resource.name": str(data.get("deployment") or "")})
    for tag in data.get("tags") or []:
        related.append({"flowbus.resource.id": f"flowbus.tag.{tag}", "flowbus.resource.role": "tag"})
    return related


class EventDataFilter(BaseModel):
    """The base of the event filters: every criterion given must hold."""

    model_config = ConfigDict(extra="forbid")

    def includes(self, event: Event) -> bool:
        """Whether ``event`` meets every criterion of this filter."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            for part in value if isinstance(value, list) else [value]:
                if isinstance(part, EventDataFilter) and not part.includes(event):
                    return False
        return True

    def excludes(self, event: Event) -> bool:
        return not self.includes(event)


def _start_of_window() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=180)


class EventOccurredFilter(EventDataFilter):
    """Events that occurred between ``since`` and ``until`` (both inclusive)."""

    since: datetime = Field(default_factory=_start_of_window,
                            description="from this time on (default: 180 days before today)")
    until: datetime = Field(default_factory=lambda: datetime.now(UTC), description="up to this time")

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def includes(self, event: Event) -> bool:
        return self.since <= event.occurred <= self.until


class EventNameFilter(EventDataFilter):
    """Events by name: exact ``name`` / ``exclude_name``, or ``prefix`` / ``exclude_prefix``."""

    prefix: list[str] | None = None
    exclude_prefix: list[str] | None = None
    name: list[str] | None = None
    exclude_name: list[str] | None = None

    def includes(self, event: Event) -> bool:
        name = event.event
        if self.prefix and not any(name.startswith(p) for p in _names(self.prefix)):
            return False
        if self.exclude_prefix and any(name.startswith(p) for p in _names(self.exclude_prefix)):
            return False
        if self.name and name not in _names(self.name):
            return False
        return not (self.exclude_name and name in _names(self.exclude_name))


def _resource_matches(resource: Mapping[str, Any], ids: list[str] | None, prefixes: list[str] | None,
                      labels: Labels | None) -> bool:  # fmt: skip
    resource_id = _label(resource, "flowbus.resource.id") or ""
    if ids and resource_id not in _names(ids):
        return False
    if prefixes and not any(resource_id.startswith(p) for p in _names(prefixes)):
        return False
    return not labels or labels_match(labels, resource)


class EventResourceFilter(EventDataFilter):
    """Events by their resource: ``id``, ``id_prefix``, ``labels``."""

    id: list[str] | None = None
    id_prefix: list[str] | None = None
    labels: Labels | None = None
    distinct: bool = Field(default=False, description="only the latest event of each resource")

    def includes(self, event: Event) -> bool:
        return _resource_matches(event.resource, self.id, self.id_prefix, self.labels)


class EventRelatedFilter(EventDataFilter):
    """Events with a related resource of these ``id``s, ``role``s, (id, role) pairs or labels."""

    id: list[str] | None = None
    role: list[str] | None = None
    resources_in_roles: list[tuple[str, str]] | None = None
    labels: Labels | None = None

    def includes(self, event: Event) -> bool:
        related = related_of(event)

        def role(r: Mapping[str, Any]) -> str:
            return _label(r, "flowbus.resource.role") or ""

        if self.id and not any(_label(r, "flowbus.resource.id") in _names(self.id) for r in related):
            return False
        if self.role and not any(role(r) in self.role for r in related):
            return False
        if self.resources_in_roles and not all(
            any(_label(r, "flowbus.resource.id") == flowbus_name(rid) and role(r) == rrole for r in related)
            for rid, rrole in self.resources_in_roles
        ):
            return False
        return not self.labels or any(labels_match(self.labels, r) for r in related)


class EventAnyResourceFilter(EventDataFilter):
    """Events whose resource or one related resource matches."""

    id: list[str] | None = None
    id_prefix: list[str] | None = None
    labels: Labels | None = None

    def includes(self, event: Event) -> bool:
        return any(_resource_matches(r, self.id, self.id_prefix, self.labels)
                   for r in [event.resource, *related_of(event)])


class EventIDFilter(EventDataFilter):
    """Events with one of these ids (an empty list: any)."""

    id: list[str] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list | tuple | set) else value

    def includes(self, event: Event) -> bool:
        return not self.id or event.id in self.id


class EventTextFilter(EventDataFilter):
    """Text search in events: every word must appear (case-insensitive) in the event's
    name, resource or payload; ``-word`` excludes; ``"a phrase"`` is one word."""

    query: str = Field(max_length=200)

    def includes(self, event: Event) -> bool:
        text = event.model_dump_json().lower()
        for negative, phrase, word in re.findall(r'(-?)(?:"([^"]*)"|(\S+))', self.query):
            term = (phrase or word).lower().lstrip("+")
            if term and (term in text) == bool(negative):
                return False
        return True


class EventOrder(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


class EventFilter(EventDataFilter):
    """Which events to read: by time, name, resource, related resources, id and text."""

    occurred: EventOccurredFilter = Field(default_factory=EventOccurredFilter)
    event: EventNameFilter | None = None
    resource: EventResourceFilter | None = None
    related: EventRelatedFilter | list[EventRelatedFilter] | None = None
    any_resource: EventAnyResourceFilter | list[EventAnyResourceFilter] | None = None
    id: EventIDFilter = Field(default_factory=lambda: EventIDFilter(id=[]))
    text: EventTextFilter | None = None
    order: EventOrder = Field(default=EventOrder.DESC, description="newest first (DESC) or oldest first")

    def server_pattern(self) -> str:
        """The event-type pattern the gateway can narrow the read with ('*' when none)."""
        names = self.event
        if names is None:
            return "*"
        if names.name and len(names.name) == 1:
            return flowbus_name(names.name[0])
        if names.prefix and len(names.prefix) == 1 and not names.name:
            return flowbus_name(names.prefix[0]) + "*"
        return "*"


__all__ = [
    "AutomationFilter",
    "AutomationFilterCreated",
    "AutomationFilterName",
    "AutomationFilterTags",
    "EventAnyResourceFilter",
    "EventDataFilter",
    "EventFilter",
    "EventIDFilter",
    "EventNameFilter",
    "EventOccurredFilter",
    "EventOrder",
    "EventRelatedFilter",
    "EventResourceFilter",
    "EventTextFilter",
]
