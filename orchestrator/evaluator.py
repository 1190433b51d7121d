"""Trigger evaluation against state kept in ``flowbus-trigger-state``.

:class:`TriggerEvaluator` turns matched leaves into :class:`Firing`\\ s. A leaf that
fires on every match (Reactive, threshold 1, no ``after``) at the top level needs no
state and costs no round trip; everything else is a compare-and-set update of its
state key with the pure functions of :mod:`orchestrator.windows`, so a restart or a
failover continues where it was, and a redelivered event is not counted twice.
A leaf inside a compound or sequence trigger that fires moves its parent on.

State keys: ``<trigger id>.<path>.<bucket>``, where ``path`` is the node's position
in the trigger tree (``r`` for the root) and ``bucket`` a hash of its ``for_each``
values. The id of a trigger derives from its definition, so updating a deployment
keeps the state of every trigger that did not change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.errors import AlreadyExists
from events.kv import KV
from events.runs import event_ref
from events.triggers import CompoundTrigger, EventTrigger, Posture, SequenceTrigger
from orchestrator import windows
from orchestrator.index import DeployedTrigger, EventView, Leaf, Path, TriggerIndex
from orchestrator.labels import bucket_labels
from orchestrator.types import Clock

log = logging.getLogger("flowbus.orchestrator.evaluator")



@dataclass(frozen=True, slots=True)
class Firing:
    """A deployment trigger that fired: what the run's id and parameters derive from."""

    deployed: DeployedTrigger
    run_id_parts: tuple[str, ...]
    context: dict[str, Any]
    triggering_event: dict[str, Any] | None
    # For proactive firings: the state key and deadline to confirm once the run exists.
    pending: tuple[str, str] | None = None


def state_key(tid: str, path: Path, bucket: str = "all") -> str:
    return f"{tid}.{'_'.join(map(str, path)) or 'r'}.{bucket}"


def bucket_of(leaf: Leaf, view: EventView) -> str:
    if not leaf.trigger.for_each:
        return "all"
    labels = bucket_labels(view.event, leaf.trigger.for_each)
    return hashlib.blake2b(json.dumps(labels).encode(), digest_size=10).hexdigest()


def _event_firing(deployed: DeployedTrigger, view: EventView) -> Firing:
    event = view.event
    return Firing(
        deployed,
        ("trigger", deployed.id, event.source, event.id),
        view.template_context(),
        event_ref(event),
    )


class TriggerEvaluator:
    """Matched leaves in, firings out; state through compare-and-set."""

    def __init__(self, kv: KV, clock: Clock) -> None:
        self._kv = kv
        self._clock = clock
        # Proactive windows with a deadline: state key -> (trigger id, deadline).
        self.deadlines: dict[str, tuple[str, datetime]] = {}
        # Proactive firings whose run is not confirmed yet: state key -> (trigger id, fired at).
        self.pending: dict[str, tuple[str, str]] = {}

    async def on_event(self, index: TriggerIndex, view: EventView, leaves: list[Leaf]) -> list[Firing]:
        firings: list[Firing] = []
        fired_triggers: set[str] = set()
        for leaf in leaves:
            deployed = index.get(leaf.trigger_id)
            if deployed is None or leaf.trigger_id in fired_triggers:
                continue
            if await self._step_leaf(deployed, leaf, view):
                fired_triggers.add(leaf.trigger_id)
                firings.append(_event_firing(deployed, view))
        return firings

    async def _step_leaf(self, deployed: DeployedTrigger, leaf: Leaf, view: EventView) -> bool:
        trigger = leaf.trigger
        event_type = view.event.type
        is_expect, is_after = leaf.is_expect(event_type), leaf.is_after(event_type)
        key = state_key(leaf.trigger_id, leaf.path, bucket_of(leaf, view))
        if trigger.posture is Posture.PROACTIVE:
            now = self._clock()
            entry = await self._update(
                key,
                lambda s: windows.step_proactive(
                    trigger, s, view.key, now, is_expect=is_expect, is_after=is_after
                ),
            )
            self._note_deadline(key, leaf.trigger_id, entry)
            return False
        if trigger.is_stateless():
            fired = True
        else:
            fired = await self._fire_step(
                key,
                lambda s: windows.step_reactive(
                    trigger, s, view.key, view.time, is_expect=is_expect, is_after=is_after
                ),
            )
        path = leaf.path
        while fired and path:
            parent_path, child = path[:-1], path[-1]
            parent = deployed.node(parent_path)
            fired = await self._step_parent(
                state_key(leaf.trigger_id, parent_path), parent, child, view
            )
            path = parent_path
        return fired

    async def _step_parent(
        self, key: str, parent: EventTrigger | CompoundTrigger | SequenceTrigger, child: int,
        view: EventView,
    ) -> bool:
        # One event may fire several children: each (child, event) pair counts once.
        signal = f"{child}\x1f{view.key}"
        if isinstance(parent, CompoundTrigger):
            return await self._fire_step(
                key, lambda s: windows.step_compound(parent, s, child, signal, view.time)
            )
        if isinstance(parent, SequenceTrigger):
            return await self._fire_step(
                key, lambda s: windows.step_sequence(parent, s, child, signal, view.time)
            )
        raise AssertionError("an event trigger has no children")

    async def _fire_step(
        self, key: str, step: Callable[[windows.State | None], tuple[windows.State, bool]]
    ) -> bool:
        fired = [False]

        def apply(current: windows.State | None) -> windows.State | None:
            new, fired[0] = step(current)
            return None if new == current else new

        await self._kv.update_json(key, apply)
        return fired[0]

    async def _update(
        self, key: str, step: Callable[[windows.State | None], windows.State | None]
    ) -> windows.State | None:
        def apply(current: windows.State | None) -> windows.State | None:
            new = step(current)
            return None if new == current else new

        result: windows.State | None = await self._kv.update_json(key, apply)
        return result

    def _note_deadline(self, key: str, tid: str, state: windows.State | None) -> None:
        deadline = None if state is None else state.get("deadline")
        if deadline is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = (tid, datetime.fromisoformat(deadline))
        pending = None if state is None else state.get("pending")
        if pending is None:
            self.pending.pop(key, None)
        else:
            self.pending[key] = (tid, str(pending))

    # --- proactive triggers ------------------------------------------------------------

    async def arm(self, index: TriggerIndex) -> None:
        """Load proactive deadlines, opening the first window where no state exists yet."""
        now = self._clock()
        wanted = {
            d.id: d for d in index.triggers()
            if isinstance(d.definition, EventTrigger) and d.definition.posture is Posture.PROACTIVE
        }
        for deployed in wanted.values():
            trigger = deployed.definition
            assert isinstance(trigger, EventTrigger)
            if not trigger.after and not trigger.for_each:
                key = state_key(deployed.id, ())
                initial = windows.initial_proactive(trigger, now)
                try:
                    await self._kv.create(key, json.dumps(initial).encode())
                except AlreadyExists:
                    pass
        if not wanted:
            return
        for key in await self._kv.keys():
            tid = key.split(".", 1)[0]
            if tid in wanted:
                self._note_deadline(key, tid, await self._kv.get_json(key))

    async def purge(self, index: TriggerIndex, trigger_ids: set[str]) -> None:
        """Delete the state of triggers that were changed or removed (unless back again)."""
        gone = {tid for tid in trigger_ids if index.get(tid) is None}
        if not gone:
            return
        for table in (self.deadlines, self.pending):
            for key in [k for k, (tid, _) in table.items() if tid in gone]:
                del table[key]
        for key in await self._kv.keys():
            if key.split(".", 1)[0] in gone:
                await self._kv.delete(key)

    async def sweep(self, index: TriggerIndex) -> list[Firing]:
        """Fire every proactive window whose deadline passed with too few events.

        Firings not yet confirmed (:meth:`confirm`) are returned again, so a run
        that was not created (a crash, NATS away) is created at the next sweep.
        """
        now = self._clock()
        for key, (tid, deadline) in list(self.deadlines.items()):
            if deadline > now:
                continue
            deployed = index.get(tid)
            if deployed is None or not isinstance(deployed.definition, EventTrigger):
                self.deadlines.pop(key, None)
                continue
            await self._expire(key, tid, deployed.definition, now)
        firings = []
        for key, (tid, fired_at) in list(self.pending.items()):
            deployed = index.get(tid)
            if deployed is None:
                self.pending.pop(key, None)
                continue
            firings.append(_proactive_firing(deployed, key, fired_at))
        return firings

    async def confirm(self, firing: Firing) -> None:
        """Record that the run of a proactive firing exists (or may not be created)."""
        if firing.pending is None:
            return
        key, fired_at = firing.pending

        def apply(current: windows.State | None) -> windows.State | None:
            if current is None:
                return None
            new = windows.confirm_proactive(current, fired_at)
            return None if new == current else new

        entry = await self._kv.update_json(key, apply)
        self._note_deadline(key, firing.deployed.id, entry)

    async def _expire(self, key: str, tid: str, trigger: EventTrigger, now: datetime) -> str | None:
        outcome: list[Any] = [None]

        def apply(current: windows.State | None) -> windows.State | None:
            outcome[0] = None
            if current is None:
                return None
            new, fired = windows.expire_proactive(trigger, current, now)
            if fired:
                outcome[0] = new.get("fired_at")
            return None if new == current else new

        entry = await self._kv.update_json(key, apply)
        self._note_deadline(key, tid, entry)
        return None if outcome[0] is None else str(outcome[0])


def _proactive_firing(deployed: DeployedTrigger, key: str, deadline: str) -> Firing:
    data = {"trigger_id": deployed.id, "deployment": deployed.deployment.name if deployed.deployment else None,
            "bucket": key, "deadline": deadline}
    context = {"event": {"id": f"{key}@{deadline}", "source": "flowbus/orchestrator",
                         "type": "flowbus.trigger.proactive", "subject": None,
                         "time": deadline, "data": data}}
    return Firing(deployed, ("trigger", deployed.id, "proactive", key, deadline), context, None,
                  pending=(key, deadline))
