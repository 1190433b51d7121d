"""The automations engine inside the orchestrator: match, fire, shape, act.

The leader hands every event to :meth:`AutomationEngine.on_event` after the
deployment triggers. Matching and trigger state are the orchestrator's own
(:class:`orchestrator.index.TriggerIndex`, :class:`orchestrator.evaluator.TriggerEvaluator`
on ``flowbus-trigger-state``), on an index holding the automations' triggers. A
firing then passes the automation's flow control (debounce, throttle, batch; state
in ``flowbus-automation-state``), the per-automation rate limit, and runs its
actions through :class:`orchestrator.automations.delivery.Deliveries`.

Firings publish ``flowbus.automation.triggered`` (``resolved`` for a Proactive
trigger whose events arrived after it fired). An automation never reacts to events
its own actions published (their source is ``flowbus/automations/<id>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from events.automation_actions import Action
from events.automation_store import DEAD_PREFIX, REDRIVE_REQUESTED, DeadLetter, check_secrets_key
from events.automations import (
    EVENT_RESOLVED,
    EVENT_TRIGGERED,
    Automation,
    Batch,
    Debounce,
    Throttle,
    source_of,
)
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.kv import KV
from events.triggers import EventTrigger, Posture
from orchestrator.automations import flowcontrol
from orchestrator.automations.actions import ActionRunner, FiringContext
from orchestrator.automations.catalog import AutomationCatalog
from orchestrator.automations.delivery import Deliveries
from orchestrator.automations.http import Backoff, HttpSender
from orchestrator.automations.metrics import AutomationMetrics
from orchestrator.automations.notify import Notifier
from orchestrator.automations.settings import AutomationSettings
from orchestrator.creation import RunCreator
from orchestrator.deployments import DeploymentCatalog
from orchestrator.evaluator import Firing, TriggerEvaluator, bucket_of, state_key
from orchestrator.index import EventView, Leaf

log = logging.getLogger("flowbus.orchestrator.automations")

OPEN_PREFIX = "open."
FLOW_PREFIX = "fc."
_ACTION: TypeAdapter[Any] = TypeAdapter(Action)


class AutomationEngine:
    """Automations of one orchestrator instance (acting only while it leads)."""

    def __init__(
        self, bus: Bus, settings: AutomationSettings, deployments: DeploymentCatalog,
        creator: RunCreator, clock: Callable[[], datetime], registry: CollectorRegistry | None = None,
        create_requested: Callable[[CloudEvent], Awaitable[Any]] | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self._deployments = deployments
        self._creator = creator
        self._clock = clock
        self._create_requested = create_requested
        self.metrics = AutomationMetrics(registry)
        self._due: dict[str, datetime] = {}  # flow-control key -> when it is due
        self._open: dict[str, str] = {}  # open.<trigger state key> -> firing key (Proactive)
        self._recent: dict[str, deque[datetime]] = {}  # automation id -> firing times (rate limit)

    async def setup(self) -> None:
        layout = self.bus.layout
        self.catalog = AutomationCatalog(await self.bus.kv(layout.automations))
        self.evaluator = TriggerEvaluator(await self.bus.kv(layout.trigger_state), self._clock)
        self._state: KV = await self.bus.kv(layout.automation_state)
        settings = self.settings
        secrets = await check_secrets_key(self.bus)
        self.http = HttpSender(Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
                               settings.http_timeout_seconds, settings.denied_networks,
                               settings.allowed_networks)
        runner = ActionRunner(
            self.bus, self._deployments, self._creator, self.http,
            Notifier(self.http, attempts=1), self._clock, settings.result_max_bytes,
            self._create_requested, secrets,
        )
        self.deliveries = Deliveries(
            self.bus, await self.bus.kv(layout.automation_deliveries), self._state, runner,
            settings, self.metrics, self._clock,
        )

    async def load(self) -> None:
        await self.catalog.load()
        self.metrics.automations.set(self.catalog.enabled())

    async def follow(self) -> None:
        """Keep the catalog current; a broken watch is re-opened (and the catalog re-read)."""
        while True:
            try:
                await self.catalog.follow(lambda: self.metrics.automations.set(self.catalog.enabled()))
            except Exception as exc:  # NATS went away: watch again once it is back
                log.warning("watching automations failed, retrying: %r", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self.load()

    async def arm(self) -> None:
        """On becoming leader: proactive deadlines, pending flow control, open firings."""
        await self.evaluator.arm(self.catalog.index)
        self._due.clear()
        self._open.clear()
        for key in await self._state.keys():
            if key.startswith(FLOW_PREFIX):
                due = flowcontrol.due_of(await self._state.get_json(key))
                if due is not None:
                    self._due[key] = due
            elif key.startswith(OPEN_PREFIX):
                value = await self._state.get_json(key)
                if value is not None:
                    self._open[key] = str(value.get("key"))
        self.metrics.pending.set(len(self._due))

    async def close(self) -> None:
        await self.http.close()

    # --- events --------------------------------------------------------------------------

    async def on_event(self, view: EventView, heartbeat: Callable[[], Awaitable[None]] | None = None) -> int:
        """Match one event against the automations and act on what fires; firings.

        ``heartbeat`` (the delivery's ``in_progress``) is sent while slow actions run.
        """
        event = view.event
        if event.type == REDRIVE_REQUESTED and isinstance(event.data, dict):
            await self.redrive(str(event.data.get("key", "")))
            return 0
        matched = await self.catalog.index.match_async(view)
        leaves = [leaf for leaf in matched if not self._own(leaf, event.source)]
        if not leaves:
            return 0
        await self._resolve(leaves, view)
        fired = 0
        for firing in await self.evaluator.on_event(self.catalog.index, view, leaves):
            automation = self.catalog.owner(firing.deployed.id)
            if automation is None:
                continue
            key = ":".join(firing.run_id_parts)
            config = automation.trigger.flow_control()
            if config is None:
                fired += await self.fire(automation, key, [firing.context["event"]], heartbeat=heartbeat)
            else:
                fired += await self._shape(automation, config, firing, view, key, heartbeat)
        return fired

    def _own(self, leaf: Leaf, source: str) -> bool:
        automation = self.catalog.owner(leaf.trigger_id)
        return automation is not None and source == source_of(automation.id)

    async def _resolve(self, leaves: list[Leaf], view: EventView) -> None:
        for leaf in leaves:
            if leaf.trigger.posture is not Posture.PROACTIVE or not leaf.is_expect(view.event.type):
                continue
            open_key = OPEN_PREFIX + state_key(leaf.trigger_id, leaf.path, bucket_of(leaf, view))
            firing_key = self._open.get(open_key)
            automation = self.catalog.owner(leaf.trigger_id)
            if firing_key is None or automation is None:
                continue
            event = view.template_context()["event"]
            await self.fire(automation, f"{firing_key}:resolved", [event], resolve=True)
            await self._state.delete(open_key)
            self._open.pop(open_key, None)

    async def _shape(self, automation: Automation, config: Debounce | Throttle | Batch,
                     firing: Firing, view: EventView, key: str,
                     heartbeat: Callable[[], Awaitable[None]] | None) -> int:
        bucket = "all"
        if isinstance(automation.trigger, EventTrigger) and automation.trigger.for_each:
            bucket = bucket_of(firing.deployed.leaves[0], view)
        fc_key = f"{FLOW_PREFIX}{automation.id}.{bucket}"
        if fc_key not in self._due and len(self._due) >= self.settings.max_pending_flow_control:
            log.warning("%d flow-control buckets pending; automation %s dropped an event",
                        len(self._due), automation.name)
            self.metrics.firings.labels("overflow").inc()
            return 0
        now = self._clock()
        event = firing.context["event"]
        out: list[list[dict[str, Any]]] = [[]]

        def step(state: dict[str, Any] | None) -> dict[str, Any]:
            new, out[0] = flowcontrol.step(config, state, key, event, now)
            return new

        stored = await self._state.update_json(fc_key, step)
        self._note_due(fc_key, stored)
        fired = 0
        for item in out[0]:
            fired += await self.fire(automation, item["key"], item["events"], heartbeat=heartbeat)
        return fired

    def _note_due(self, fc_key: str, state: dict[str, Any] | None) -> None:
        due = flowcontrol.due_of(state)
        if due is None:
            self._due.pop(fc_key, None)
        else:
            self._due[fc_key] = due
        self.metrics.pending.set(len(self._due))

    # --- time -----------------------------------------------------------------------------

    async def tick(self) -> int:
        """Proactive deadlines and due flow control (tests call it with an injected clock)."""
        fired = 0
        if self.catalog.retired:
            retired, self.catalog.retired = self.catalog.retired, set()
            await self.evaluator.purge(self.catalog.index, retired)
        for firing in await self.evaluator.sweep(self.catalog.index):
            fired += await self._proactive(firing)
            await self.evaluator.confirm(firing)  # only now: a crash before fires it again
        now = self._clock()
        for fc_key, due in list(self._due.items()):
            if due <= now:
                fired += await self._expire(fc_key, now)
        return fired

    async def _proactive(self, firing: Firing) -> int:
        automation = self.catalog.owner(firing.deployed.id)
        if automation is None:
            return 0
        key = ":".join(firing.run_id_parts)
        fired = await self.fire(automation, key, [firing.context["event"]])
        if automation.actions_on_resolve:
            open_key = OPEN_PREFIX + firing.run_id_parts[3]
            await self._state.put_json(open_key, {"key": key})
            self._open[open_key] = key
        return fired

    async def _expire(self, fc_key: str, now: datetime) -> int:
        automation = self.catalog.get(fc_key[len(FLOW_PREFIX):].split(".", 1)[0])
        config = automation.trigger.flow_control() if automation else None
        if automation is None or config is None:
            self._due.pop(fc_key, None)
            await self._state.delete(fc_key)
            return 0
        out: list[list[dict[str, Any]]] = [[]]

        def expire(state: dict[str, Any] | None) -> dict[str, Any] | None:
            if state is None:
                out[0] = []
                return None
            new, out[0] = flowcontrol.expire(config, state, now)
            return new

        stored = await self._state.update_json(fc_key, expire)
        self._note_due(fc_key, stored)
        fired = 0
        for item in out[0]:
            fired += await self.fire(automation, item["key"], item["events"])
        return fired

    # --- firing ---------------------------------------------------------------------------

    def _allow(self, automation: Automation) -> bool:
        now = self._clock()
        recent = self._recent.setdefault(automation.id, deque())
        while recent and now - recent[0] >= timedelta(minutes=1):
            recent.popleft()
        if len(recent) >= self.settings.max_firings_per_minute:
            return False
        recent.append(now)
        return True

    async def fire(self, automation: Automation, key: str, events: list[dict[str, Any]],
                   *, resolve: bool = False, heartbeat: Callable[[], Awaitable[None]] | None = None) -> int:
        """Run a firing's actions (``actions_on_resolve`` for a resolution); 1 if it ran."""
        if not self._allow(automation):
            log.warning("automation %s fired over %d times a minute; firing %s dropped "
                        "(FLOWBUS_AUTOMATIONS_MAX_FIRINGS_PER_MINUTE)",
                        automation.name, self.settings.max_firings_per_minute, key)
            self.metrics.firings.labels("rate-limited").inc()
            return 0
        self.metrics.firings.labels("resolved" if resolve else "triggered").inc()
        kind = EVENT_RESOLVED if resolve else EVENT_TRIGGERED
        announced = asyncio.ensure_future(self.bus.publish(CloudEvent.create(
            kind, source=source_of(automation.id),
            id=hashlib.sha256(f"{automation.id}\x1f{kind}\x1f{key}".encode()).hexdigest()[:40],
            subject=f"flowbus.automation.{automation.id}",
            data={"automation_id": automation.id, "automation_name": automation.name,
                  "firing": key, "events": len(events),
                  "triggering_event": {k: events[-1].get(k) for k in ("id", "source", "type")}},
        )))
        ctx = FiringContext(automation, key, events[-1], events, resolve, announced=announced,
                            heartbeat=heartbeat)
        actions = automation.actions_on_resolve if resolve else automation.firing_actions()
        try:
            for index, action in enumerate(actions):
                await self.deliveries.deliver(action, index, ctx)
        finally:
            if not announced.done():
                await asyncio.wait({announced})
        announced.result()  # a failed announcement fails the firing: the event is redelivered
        return 1

    async def redrive(self, key: str) -> str:
        """Run a dead-lettered action again; its outcome (done, dead, missing)."""
        entry = await self._state.get(DEAD_PREFIX + key) if key else None
        if entry is None:
            return "missing"
        letter = DeadLetter.model_validate_json(entry.value)
        automation = self.catalog.get(letter.automation_id)
        if automation is None:
            log.warning("dead letter %s: automation %s no longer exists", key, letter.automation_id)
            return "missing"
        firing = letter.firing
        ctx = FiringContext(automation, str(firing["key"]), dict(firing["event"]),
                            list(firing.get("events") or [firing["event"]]), bool(firing.get("resolve")))
        # The dead letter's revision names this redrive (a failure rewrites the letter).
        outcome = await self.deliveries.deliver(_ACTION.validate_python(letter.action),
                                                letter.action_index, ctx, force=True,
                                                redrive=f"redrive-{entry.revision}")
        if outcome == "done":
            await self._state.delete(DEAD_PREFIX + key)
        return outcome

