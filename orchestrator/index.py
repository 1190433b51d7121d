"""The trigger index: an event only meets the triggers that can match its type.

Every event trigger (a *leaf*; compound and sequence triggers are trees of them) is
filed under each of its ``expect``/``after`` patterns. Exact names go into a dict;
a pattern with ``*`` goes under its literal prefix, the characters before its first
``*`` (``com.github.*`` under ``com.github.``). An event of type ``t`` looks up one
exact entry and ``t[:n]`` for each distinct prefix length ``n`` in use (a handful),
and tests only the patterns found there, whatever the number of triggers. Identical
patterns are tested once. :func:`match_brute_force` is the reference the property
tests compare against.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from events.cloudevent import CloudEvent, to_dict
from events.records import Deployment
from events.subjects import type_matches
from events.triggers import (
    CompoundTrigger,
    DeploymentCompoundTrigger,
    DeploymentEventTrigger,
    DeploymentSequenceTrigger,
    EventTrigger,
    SequenceTrigger,
    WhenBudgetExceeded,
    compile_when,
    parse_deployment_trigger,
    trigger_id,
)
from orchestrator.labels import LabelSpec, related_resources

log = logging.getLogger("flowbus.orchestrator.triggers")

# An event at least this large (its JSON bytes), or a ``when`` with a macro, has its
# ``when`` expressions evaluated in a worker thread: celpy is pure Python, and turning
# a large event into CEL values or a macro going over a list would hold the event loop.
OFF_LOOP_BYTES = 1024

AnyDeploymentTrigger = DeploymentEventTrigger | DeploymentCompoundTrigger | DeploymentSequenceTrigger
Path = tuple[int, ...]


class EventView:
    """An event as triggers see it: identity key, effective time, lazy CEL form.

    The effective time is the event's ``time``, but never later than its arrival
    (``received``, the stream's timestamp); without ``time``, the arrival.
    """

    __slots__ = ("_cel", "event", "key", "over_budget", "size", "time")

    def __init__(self, event: CloudEvent, received: Any, size: int = 0) -> None:
        self.event = event
        self.size = size  # the event's JSON bytes as stored (0: small or unknown)
        # (trigger id, reason) of each leaf whose ``when`` went over its budget: the
        # service turns each into a dead letter and a count.
        self.over_budget: dict[str, str] = {}
        self.key = f"{event.source}\x1f{event.id}"
        # An event cannot have happened after it arrived: a clock far ahead (or a
        # hostile client) must not push a window into the future.
        self.time = min(event.time, received) if event.time else received
        self._cel: Any = None

    def template_context(self) -> dict[str, Any]:
        """``event`` for templates: attributes, extensions and ``data`` with its types."""
        body = to_dict(self.event)
        body.setdefault("subject", None)
        body.setdefault("time", None)
        body["data"] = self.event.data if not isinstance(self.event.data, bytes) else None
        return {"event": body}

    def cel(self) -> Any:
        if self._cel is None:
            from celpy.adapter import json_to_cel

            self._cel = {"event": json_to_cel(self.template_context()["event"])}
        return self._cel


@dataclass(frozen=True, slots=True, eq=False)
class Leaf:
    """One event trigger inside a deployment trigger, compiled for matching."""

    trigger_id: str
    path: Path
    trigger: EventTrigger
    match: LabelSpec
    related: tuple[LabelSpec, ...]
    when: Any

    @property
    def key(self) -> tuple[str, Path]:
        return (self.trigger_id, self.path)

    def patterns(self) -> set[str]:
        """Event names this leaf listens to (an empty ``expect`` means every event)."""
        return set(self.trigger.expect or {"*"}) | self.trigger.after

    def is_expect(self, event_type: str) -> bool:
        expect = self.trigger.expect
        return not expect or any(type_matches(p, event_type) for p in expect)

    def is_after(self, event_type: str) -> bool:
        return any(type_matches(p, event_type) for p in self.trigger.after)

    def accepts(self, view: EventView) -> bool:
        """Whether the event passes ``match``, ``match_related`` and ``when`` (not the type)."""
        event = view.event
        if not self.match.matches_event(event):
            return False
        if self.related:
            resources = related_resources(event)
            if not all(spec.includes(resources) for spec in self.related):
                return False
        if self.when is not None:
            try:
                self.when.check_budget(event.data)
                return bool(self.when.evaluate(view.cel()))
            except WhenBudgetExceeded as exc:
                log.warning("trigger 'when' not evaluated for event %s: %s", view.event.id, exc)
                view.over_budget[self.trigger_id] = str(exc)
                return False
            except Exception:  # a CEL error (missing field, wrong type) is "no match"
                return False
        return True


@dataclass(eq=False)
class DeployedTrigger:
    """A deployment trigger with its id and compiled leaves."""

    id: str
    deployment: Deployment | None  # None: the trigger of an automation (orchestrator/automations)
    definition: AnyDeploymentTrigger
    leaves: list[Leaf] = field(default_factory=list)

    def node(self, path: Path) -> EventTrigger | CompoundTrigger | SequenceTrigger:
        node: Any = self.definition
        for index in path:
            node = node.triggers[index]
        assert isinstance(node, EventTrigger | CompoundTrigger | SequenceTrigger)
        return node


def _leaves(tid: str, node: Any, path: Path) -> Iterator[Leaf]:
    if isinstance(node, EventTrigger):
        related = node.match_related
        specs = [related] if isinstance(related, dict) else list(related)
        yield Leaf(
            trigger_id=tid,
            path=path,
            trigger=node,
            match=LabelSpec.compile(node.match),
            related=tuple(LabelSpec.compile(s) for s in specs if s),
            when=compile_when(node.when) if node.when else None,
        )
        return
    for index, child in enumerate(node.triggers):
        yield from _leaves(tid, child, (*path, index))


def compile_trigger(tid: str, deployment: Deployment | None, definition: AnyDeploymentTrigger) -> DeployedTrigger:
    """One trigger with its leaves compiled for matching (InvalidTrigger if one is bad)."""
    deployed = DeployedTrigger(tid, deployment, definition)
    deployed.leaves = list(_leaves(tid, definition, ()))
    return deployed


def compile_triggers(deployment: Deployment) -> list[DeployedTrigger]:
    """Every enabled trigger of ``deployment``, compiled (InvalidTrigger if one is bad)."""
    out = []
    for raw in deployment.triggers:
        definition = parse_deployment_trigger(raw)
        if not definition.enabled:
            continue
        tid = trigger_id(deployment.id, definition)
        deployed = DeployedTrigger(tid, deployment, definition)
        deployed.leaves = list(_leaves(tid, definition, ()))
        out.append(deployed)
    return out


def _prefix(pattern: str) -> str:
    return pattern[: pattern.index("*")]


class TriggerIndex:
    """Leaves by exact event type and by the literal prefix of ``*`` patterns."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[tuple[str, Path], Leaf]] = {}
        # literal prefix -> pattern -> leaves
        self._wild: dict[str, dict[str, dict[tuple[str, Path], Leaf]]] = {}
        self._prefix_lengths: Counter[int] = Counter()  # length -> wildcard patterns with it
        self._lengths: tuple[int, ...] = ()
        self._triggers: dict[str, DeployedTrigger] = {}
        self._by_deployment: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._triggers)

    def triggers(self) -> Iterable[DeployedTrigger]:
        return self._triggers.values()

    def get(self, tid: str) -> DeployedTrigger | None:
        return self._triggers.get(tid)

    def deployment_trigger_ids(self, deployment_name: str) -> list[str]:
        return list(self._by_deployment.get(deployment_name, ()))

    def replace_deployment(self, name: str, triggers: list[DeployedTrigger]) -> set[str]:
        """Swap the triggers of deployment ``name`` (an empty list removes them).

        Returns the ids of the triggers that are gone (changed or removed).
        """
        old = set(self._by_deployment.pop(name, []))
        for tid in old:
            self._remove(tid)
        for deployed in triggers:
            self._add(deployed)
        if triggers:
            self._by_deployment[name] = [t.id for t in triggers]
        return old - {t.id for t in triggers}

    def _add(self, deployed: DeployedTrigger) -> None:
        self._remove(deployed.id)
        self._triggers[deployed.id] = deployed
        for leaf in deployed.leaves:
            for pattern in leaf.patterns():
                if "*" not in pattern:
                    self._exact.setdefault(pattern, {})[leaf.key] = leaf
                else:
                    prefix = _prefix(pattern)
                    by_pattern = self._wild.setdefault(prefix, {})
                    if pattern not in by_pattern:
                        by_pattern[pattern] = {}
                        self._count_length(len(prefix), +1)
                    by_pattern[pattern][leaf.key] = leaf

    def _remove(self, tid: str) -> None:
        deployed = self._triggers.pop(tid, None)
        if deployed is None:
            return
        for leaf in deployed.leaves:
            for pattern in leaf.patterns():
                if "*" not in pattern:
                    bucket = self._exact.get(pattern)
                    if bucket is not None:
                        bucket.pop(leaf.key, None)
                        if not bucket:
                            del self._exact[pattern]
                    continue
                prefix = _prefix(pattern)
                by_pattern = self._wild.get(prefix, {})
                leaves = by_pattern.get(pattern)
                if leaves is not None:
                    leaves.pop(leaf.key, None)
                    if not leaves:
                        del by_pattern[pattern]
                        self._count_length(len(prefix), -1)
                if not by_pattern:
                    self._wild.pop(prefix, None)

    def _count_length(self, length: int, change: int) -> None:
        self._prefix_lengths[length] += change
        if self._prefix_lengths[length] <= 0:
            del self._prefix_lengths[length]
        self._lengths = tuple(sorted(self._prefix_lengths))

    def candidates(self, event_type: str) -> list[Leaf]:
        """Leaves whose ``expect`` or ``after`` names ``event_type`` (each once)."""
        found: dict[tuple[str, Path], Leaf] = dict(self._exact.get(event_type, {}))
        size = len(event_type)
        for length in self._lengths:
            if length > size:
                break
            self._add_wild(found, event_type[:length], event_type)
        return list(found.values())

    def _add_wild(self, found: dict[tuple[str, Path], Leaf], prefix: str, event_type: str) -> None:
        by_pattern = self._wild.get(prefix)
        if not by_pattern:
            return
        for pattern, leaves in by_pattern.items():
            if type_matches(pattern, event_type):
                found.update(leaves)

    def match(self, view: EventView) -> list[Leaf]:
        """Leaves the event fully matches: type, labels, related resources and ``when``."""
        return [leaf for leaf in self.candidates(view.event.type) if leaf.accepts(view)]

    async def match_async(self, view: EventView) -> list[Leaf]:
        """:meth:`match`, with the ``when`` expressions evaluated in a worker thread when
        the event is large or a ``when`` has a macro (the event loop keeps turning)."""
        candidates = self.candidates(view.event.type)
        whens = [leaf.when for leaf in candidates if leaf.when is not None]
        if not whens or (view.size < OFF_LOOP_BYTES and not any(w.macros for w in whens)):
            return [leaf for leaf in candidates if leaf.accepts(view)]
        return await asyncio.get_running_loop().run_in_executor(
            _when_thread(), lambda: [leaf for leaf in candidates if leaf.accepts(view)])


@lru_cache(maxsize=1)
def _when_thread() -> ThreadPoolExecutor:
    """One thread for all ``when`` evaluations: celpy evaluates one expression at a time."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowbus-when")


def match_brute_force(triggers: Iterable[DeployedTrigger], view: EventView) -> list[Leaf]:
    """The same answer as :meth:`TriggerIndex.match`, by looking at every leaf."""
    event_type = view.event.type
    return [
        leaf
        for deployed in triggers
        for leaf in deployed.leaves
        if any(type_matches(p, event_type) for p in leaf.patterns()) and leaf.accepts(view)
    ]
