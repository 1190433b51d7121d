"""Resource labels of a CloudEvent, and label specifications matched against them.

Prefect matches triggers on the labels of an event's *resource* (``prefect.resource.id``
and friends) and of its *related* resources. A CloudEvent has attributes instead; the
mapping (docs/triggers.md) is:

- ``prefect.resource.id`` / ``flowbus.resource.id``: the event's resource, i.e. its
  ``subject``, else its ``source``;
- ``id``, ``source``, ``type``, ``subject``: those attributes;
- any extension attribute by its name;
- ``data.<a>.<b>``: a field inside ``data`` (numbers and booleans as JSON text);
- any other label: the same label in ``data.resource`` (a dict), when present.

Related resources are the dicts of the list ``data.related``; a ``match_related``
specification matches when one related resource carries all its labels.

A label's expected value is a string or a list of strings; ``*`` matches any
characters, a leading ``!`` negates. A label matches when no negative value matches
and, if there are positive values, one of them does; a missing label fails positive
values and passes purely negative ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from events.cloudevent import CONTEXT_ATTRIBUTES, CloudEvent

RESOURCE_ID_LABELS = frozenset({"prefect.resource.id", "flowbus.resource.id"})


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _data_path(data: Any, path: str) -> Any:
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def label_value(event: CloudEvent, label: str) -> str | None:
    """The value of ``label`` on the event's resource (None when it has none)."""
    if label in RESOURCE_ID_LABELS:
        return event.resource
    if label in CONTEXT_ATTRIBUTES:
        return _text(event.attribute(label))
    if label in event.extensions:
        return _text(event.extensions[label])
    if label.startswith("data."):
        return _text(_data_path(event.data, label[5:]))
    if isinstance(event.data, Mapping):
        resource = event.data.get("resource")
        if isinstance(resource, Mapping):
            return _text(resource.get(label))
    return None


def related_resources(event: CloudEvent) -> list[Mapping[str, Any]]:
    """The related resources of an event: the dicts in ``data.related``."""
    if not isinstance(event.data, Mapping):
        return []
    related = event.data.get("related")
    if not isinstance(related, list):
        return []
    return [r for r in related if isinstance(r, Mapping)]


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.DOTALL)


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """The expected values of one label, compiled."""

    exact: frozenset[str]
    globs: tuple[re.Pattern[str], ...]
    not_exact: frozenset[str]
    not_globs: tuple[re.Pattern[str], ...]

    @classmethod
    def compile(cls, value: str | list[str]) -> ValueSpec:
        values = [value] if isinstance(value, str) else list(value)
        exact: set[str] = set()
        not_exact: set[str] = set()
        globs: list[re.Pattern[str]] = []
        not_globs: list[re.Pattern[str]] = []
        for item in values:
            negative = item.startswith("!")
            text = item[1:] if negative else item
            if "*" in text:
                (not_globs if negative else globs).append(_glob(text))
            else:
                (not_exact if negative else exact).add(text)
        return cls(frozenset(exact), tuple(globs), frozenset(not_exact), tuple(not_globs))

    @property
    def has_positive(self) -> bool:
        return bool(self.exact or self.globs)

    def matches(self, value: str | None) -> bool:
        if value is None:
            return not self.has_positive
        if value in self.not_exact or any(g.fullmatch(value) for g in self.not_globs):
            return False
        if not self.has_positive:
            return True
        return value in self.exact or any(g.fullmatch(value) for g in self.globs)


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """A compiled ``match`` (or one ``match_related``) specification."""

    labels: tuple[tuple[str, ValueSpec], ...]

    @classmethod
    def compile(cls, spec: Mapping[str, str | list[str]]) -> LabelSpec:
        return cls(tuple((k, ValueSpec.compile(v)) for k, v in sorted(spec.items())))

    def matches_event(self, event: CloudEvent) -> bool:
        return all(vs.matches(label_value(event, label)) for label, vs in self.labels)

    def matches_resource(self, resource: Mapping[str, Any]) -> bool:
        return all(vs.matches(_text(resource.get(label))) for label, vs in self.labels)

    def includes(self, resources: list[Mapping[str, Any]]) -> bool:
        """Whether one of ``resources`` matches (an empty spec matches always)."""
        if not self.labels:
            return True
        return any(self.matches_resource(r) for r in resources)


def bucket_labels(event: CloudEvent, for_each: frozenset[str] | set[str]) -> tuple[tuple[str, str], ...]:
    """The (label, value) pairs that pick an event's ``for_each`` bucket."""
    return tuple((label, label_value(event, label) or "") for label in sorted(for_each))
