"""At-least-once actions with an idempotency key; dead letters for those that keep failing.

The key of an action is a hash of (automation, action index, firing). Before an
action runs, ``done.<key>`` is looked up in ``flowbus-automation-deliveries`` (kept 7
days); after it succeeded or was dead-lettered the key is written. A redelivered
triggering event therefore finds the key and does nothing: the action was done once.
A crash between the action and the write repeats the action (at least once); the key
travels with it (``X-Flowbus-Delivery``, the run request's idempotency key, the
emitted event's id) so the receiver can drop the repeat.

Failures are retried ``attempts`` times with exponential backoff; a permanent one
(a 4xx answer, a missing deployment, a rejected transition, a failing template) is not.
Then the action goes to ``dead.<key>`` in ``flowbus-automation-state`` with the reason,
and ``flowbus.automation.action.failed`` is published; a success publishes
``flowbus.automation.action.executed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from events.automation_actions import CallWebhook
from events.automation_store import DEAD_PREFIX, DeadLetter
from events.automations import EVENT_EXECUTED, EVENT_FAILED, source_of
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.kv import KV
from orchestrator.automations.actions import ActionRunner, FiringContext
from orchestrator.automations.http import Backoff, DeliveryFailed
from orchestrator.automations.metrics import AutomationMetrics
from orchestrator.automations.settings import AutomationSettings

log = logging.getLogger("flowbus.orchestrator.automations.delivery")
T = TypeVar("T")


async def _beating(work: Coroutine[Any, Any, T], ctx: FiringContext, every: float) -> T:
    """Await ``work``, sending the triggering event's heartbeat every few seconds meanwhile,
    so a slow webhook or SMTP server does not make JetStream redeliver the event."""
    if ctx.heartbeat is None:
        return await work
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            with contextlib.suppress(Exception):
                await ctx.heartbeat()
    finally:
        if not task.done():
            task.cancel()


def action_key(automation_id: str, index: int, firing_key: str, resolve: bool = False) -> str:
    """The idempotency key of one action of one firing."""
    kind = "resolve" if resolve else "fire"
    raw = f"{automation_id}\x1f{kind}\x1f{index}\x1f{firing_key}".encode()
    return hashlib.sha256(raw).hexdigest()[:40]


class Deliveries:
    """Runs actions once per key, retrying, recording and dead-lettering."""

    def __init__(
        self, bus: Bus, done: KV, state: KV, runner: ActionRunner, settings: AutomationSettings,
        metrics: AutomationMetrics, clock: Callable[[], datetime],
    ) -> None:
        self._bus = bus
        self._done = done
        self._state = state
        self._runner = runner
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._backoff = Backoff(settings.retry_base_seconds, settings.retry_max_seconds)
        self._beat = settings.heartbeat_seconds

    async def deliver(self, action: Any, index: int, ctx: FiringContext, *, force: bool = False,
                      redrive: str = "") -> str:
        """Run one action of a firing at least once; its outcome (done, duplicate, dead).

        ``redrive`` (with ``force``) names one redrive of a dead letter; it makes the ids
        of the outcome events new, so a redrive that fails again within JetStream's
        duplicate window still publishes its failure.
        """
        key = action_key(ctx.automation.id, index, ctx.key, ctx.resolve)
        if not force and await self._done.get(f"done.{key}") is not None:
            self._metrics.actions.labels(action.type, "duplicate").inc()
            return "duplicate"
        attempts = action.max_attempts if isinstance(action, CallWebhook) else self._settings.action_attempts
        started = time.perf_counter()
        reason = ""
        made = 0
        for attempt in range(attempts):
            if attempt:
                await _beating(asyncio.sleep(self._backoff.delay(attempt - 1)), ctx, self._beat)
            made += 1
            try:
                details = await _beating(self._runner.run(action, ctx, key), ctx, self._beat)
            except DeliveryFailed as exc:
                reason = str(exc)
                if exc.permanent:
                    break
                continue
            self._metrics.latency.labels(action.type).observe(time.perf_counter() - started)
            await self._done.put_json(f"done.{key}", {"outcome": "done", "at": self._clock().isoformat()})
            self._metrics.actions.labels(action.type, "done").inc()
            await self._publish(EVENT_EXECUTED, key, ctx, index, action, {"details": details},
                                redrive)
            return "done"
        await self._dead_letter(key, action, index, ctx, reason, made, redrive)
        return "dead"

    async def _dead_letter(self, key: str, action: Any, index: int, ctx: FiringContext,
                           reason: str, attempts: int, redrive: str = "") -> None:
        log.warning("automation %s action %d (%s) dead-lettered: %s",
                    ctx.automation.name, index, action.type, reason)
        letter = DeadLetter(
            key=key, automation_id=ctx.automation.id, automation_name=ctx.automation.name,
            action_index=index, action=action.model_dump(mode="json"), reason=reason,
            attempts=attempts, failed_at=self._clock(),
            firing={"key": ctx.key, "event": ctx.event, "events": ctx.events, "resolve": ctx.resolve},
        )
        await self._state.put(DEAD_PREFIX + key, letter.model_dump_json().encode())
        await self._done.put_json(f"done.{key}", {"outcome": "dead", "at": self._clock().isoformat()})
        self._metrics.actions.labels(action.type, "dead").inc()
        self._metrics.dead_letters.inc()
        await self._publish(EVENT_FAILED, key, ctx, index, action, {"reason": reason, "attempts": attempts},
                            redrive)
        await self._trim()

    async def _trim(self) -> None:
        keys = [k for k in await self._state.keys() if k.startswith(DEAD_PREFIX)]
        excess = len(keys) - self._settings.max_dead_letters
        if excess <= 0:
            return
        letters = []
        for key in keys:
            entry = await self._state.get(key)
            if entry is not None:
                letters.append((DeadLetter.model_validate_json(entry.value).failed_at, key))
        for _, key in sorted(letters)[:excess]:
            await self._state.delete(key)

    async def _publish(self, kind: str, key: str, ctx: FiringContext, index: int, action: Any,
                       extra: dict[str, Any], redrive: str = "") -> None:
        event = ctx.event
        event_id = f"{key}:{kind.rsplit('.', 1)[-1]}" + (f":{redrive}" if redrive else "")
        if ctx.announced is not None:
            await ctx.announced
        await self._bus.publish(CloudEvent.create(
            kind, source=source_of(ctx.automation.id), id=event_id,
            subject=f"flowbus.automation.{ctx.automation.id}",
            data={
                "automation_id": ctx.automation.id, "automation_name": ctx.automation.name,
                "action_index": index, "action_type": action.type, "key": key,
                "triggering_event": {k: event.get(k) for k in ("id", "source", "type")},
                **extra,
            },
        ))
