"""The run tracker: due jobs, late runs, crashed runs, concurrency slots.

The leader follows ``flowbus-flow-runs`` (``KV.watch``) and keeps the non-final runs
in memory (at most ``max_tracked_runs``). Each tick it

- publishes the job of a Scheduled/AwaitingRetry run whose start time came;
- marks a Scheduled run past its start plus ``late_grace_seconds`` Late;
- fails a Suspended run whose pause expired (it never resumed, as Prefect does), and a
  Paused one whose runner went silent too;
- settles a Pending/Running run whose record was not updated for the stale
  period its runner stamped into the state data at the claim (worker lease plus
  heartbeat interval), or ``heartbeat_timeout_seconds`` for a record without one
  (the runner touches ``updated`` while the flow runs): concluded from the
  outcome its attempt recorded, or Crashed and, if the run's ``retries`` (copied
  from the deployment) allow, AwaitingRetry; a run left Pending mid-claim is
  handed back to Scheduled (:func:`events.attempts.take_over`);
- renews the concurrency slots of live runs and releases those of finished ones;
- starts queued (AwaitingConcurrencySlot) runs, oldest first, when slots are free.

Queued runs are also retried the moment a run finishes (seen on the watch), so a
freed slot is used at once, not after a polling period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from events import attempts, concurrency, pauses
from events.aio import cancel_and_wait
from events.errors import FlowbusError, TransitionRejected, UpdateConflict
from events.kv import KV
from events.records import Deployment, FlowRun
from events.states import is_final
from orchestrator.creation import RunCreator
from orchestrator.metrics import Metrics
from orchestrator.settings import OrchestratorSettings
from orchestrator.types import Clock

log = logging.getLogger("flowbus.orchestrator.runs")

ACTIVE = frozenset({"Pending", "Running", "Retrying"})
DUE = frozenset({"Scheduled", "Late", "AwaitingRetry", "Resuming"})


class RunTracker:
    """Non-final runs, watched and acted on."""

    def __init__(
        self, runs: KV, slots: KV, creator: RunCreator, settings: OrchestratorSettings,
        metrics: Metrics, clock: Clock,
        deployment_of: Callable[[str], Deployment | None] | None = None,
        *, attempts_kv: KV,
    ) -> None:
        self._kv = runs
        self._attempts = attempts_kv
        self._slots = slots
        self._creator = creator
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self.deployment_of = deployment_of or (lambda name: None)
        self.runs: dict[str, FlowRun] = {}
        self._queued: set[str] = set()  # the AwaitingConcurrencySlot ones among ``runs``
        self._held: dict[str, list[concurrency.Slot]] = {}
        self._renewed: dict[str, datetime] = {}
        self._freed = asyncio.Event()

    async def load(self) -> None:
        for key in await self._kv.keys():
            entry = await self._kv.get(key)
            if entry is not None:
                self._apply(key, entry.value)

    def _apply(self, key: str, value: bytes | None) -> None:
        try:
            run = None if value is None else FlowRun.model_validate_json(value)
        except ValueError:
            log.warning("flow-run record %s is not a valid record; ignored", key)
            return
        if run is None or is_final(run.state.name):
            self._queued.discard(key)
            if self.runs.pop(key, None) is not None or key in self._held:
                if self._may_hold_slots(key):
                    self._freed.set()
                else:  # nothing to release: forget it (a leftover key goes at the tick)
                    self._held.pop(key, None)
                    self._renewed.pop(key, None)
            return
        if key not in self.runs and len(self.runs) >= self._settings.max_tracked_runs:
            log.warning("tracking %d runs already; run %s is not watched", len(self.runs), key)
            return
        self.runs[key] = run
        if run.state.name == "AwaitingConcurrencySlot":
            self._queued.add(key)
        else:
            self._queued.discard(key)
        self._metrics.tracked.set(len(self.runs))

    async def follow(self, halt: asyncio.Event) -> None:
        """Apply record changes as they happen; start queued runs when one finishes."""
        async with asyncio.TaskGroup() as tg:
            releaser = tg.create_task(self._release_loop(halt))
            try:
                async for change in self._kv.watch():
                    self._apply(change.key, change.value)
            finally:
                await cancel_and_wait([releaser])

    async def _release_loop(self, halt: asyncio.Event) -> None:
        while not halt.is_set():
            await self._freed.wait()
            self._freed.clear()
            try:
                await self.release_finished()
                await self.start_queued()
            except FlowbusError as exc:
                log.warning("releasing slots failed, retrying next tick: %s", exc)

    async def tick(self) -> None:
        now = self._clock()
        for run in list(self.runs.values()):
            try:
                await self._check(run, now)
            except TransitionRejected as exc:
                log.debug("run moved meanwhile: %s", exc)
        await self.release_finished()
        await self.renew_slots(now)
        await self.start_queued()

    async def _check(self, run: FlowRun, now: datetime) -> None:
        name = run.state.name
        settings = self._settings
        if name in DUE and run.expected_start_time <= now:
            if not self._creator.was_published(run):
                await self._creator.publish_job(run)
            grace = timedelta(seconds=settings.late_grace_seconds)
            if name == "Scheduled" and now > run.expected_start_time + grace:
                await self._publish(await self._creator.move(run, "Late", "not started in time"))
        elif name in ACTIVE and now - run.updated > timedelta(seconds=self.silence_limit(run)):
            await self._crash(run, now)
        elif pauses.expired(run, now) and (name == "Suspended" or now - run.updated > timedelta(
                seconds=settings.heartbeat_timeout_seconds)):
            # A paused run whose runner is alive fails through its body (FlowPauseTimeout).
            failed = await pauses.fail_expired(self._kv, run)
            if failed is not None:
                await self._publish(failed)

    def silence_limit(self, run: FlowRun) -> float:
        """Seconds without an update after which ``run``'s attempt is settled: the stale
        period its runner stamped at the claim (worker lease + heartbeat interval, the
        same wait as a runner's takeover), else ``heartbeat_timeout_seconds``."""
        stamped = run.state.data.stale_after
        return stamped if stamped is not None else self._settings.heartbeat_timeout_seconds

    async def _crash(self, run: FlowRun, now: datetime) -> None:
        """Settle the attempt of a run whose runner went silent (events.attempts)."""
        entry = await self._kv.get(run.id, latest=True)
        if entry is None:
            return
        stored = FlowRun.model_validate_json(entry.value)
        if stored.state.name != run.state.name or stored.updated != run.updated:
            self._apply(run.id, entry.value)  # it moved or heartbeated meanwhile
            return
        silent = int((now - run.updated).total_seconds())
        _, steps = await attempts.take_over(self._attempts, stored, f"no heartbeat for {silent} s",
                                            now)
        revision = entry.revision
        for step in steps:
            step = step.model_copy(update={"updated": now})
            try:
                revision = await self._kv.cas(run.id, step.model_dump_json().encode(), revision)
            except UpdateConflict:
                return  # a runner took it over at the same moment: theirs now
            self._metrics.transitions.labels(step.state.name).inc()
            await self._publish(step)

    async def _publish(self, run: FlowRun) -> None:
        self._apply(run.id, run.model_dump_json().encode())
        await self._creator.publish_state(run)

    def _may_hold_slots(self, run_id: str) -> bool:
        """False only for a run known to hold no concurrency slot: its finish frees none."""
        held = self._held.get(run_id)
        if held is not None:
            return bool(held)
        return not self._creator.holds_no_slots(run_id)

    async def _held_slots(self, run_id: str) -> list[concurrency.Slot]:
        if run_id not in self._held and self._creator.holds_no_slots(run_id):
            return []  # created here under no limit: no ``held.<id>`` key to read
        if run_id not in self._held:
            keys = await self._slots.get_json(f"held.{run_id}") or []
            held = []
            for key in keys:
                slot = await concurrency.slots_of(self._slots, key, run_id)
                if slot is not None:
                    held.append(slot)
            self._held[run_id] = held
        return self._held[run_id]

    async def renew_slots(self, now: datetime) -> None:
        ttl = self._settings.slot_ttl_seconds
        for run_id in list(self.runs):
            last = self._renewed.get(run_id)
            if last is not None and (now - last).total_seconds() < ttl / 3:
                continue
            self._renewed[run_id] = now
            held = await self._held_slots(run_id)
            renewed = []
            for slot in held:
                fresh = await concurrency.renew(self._slots, slot, ttl=ttl, now=now)
                if fresh is not None:
                    renewed.append(fresh)
            self._held[run_id] = renewed

    async def release_finished(self) -> None:
        """Release the slots of runs that are no longer live."""
        for key in await self._slots.keys():
            if not key.startswith("held."):
                continue
            run_id = key[5:]
            if run_id in self.runs and not is_final(self.runs[run_id].state.name):
                continue
            record = await self._kv.get_json(run_id)
            if record is not None and not is_final(record["state"]["name"]):
                continue
            for slot_key in await self._slots.get_json(key) or []:
                slot = await concurrency.slots_of(self._slots, slot_key, run_id)
                if slot is not None:
                    await concurrency.release(self._slots, slot)
            await self._slots.delete(key)
            self._held.pop(run_id, None)
            self._renewed.pop(run_id, None)

    def slots_held(self) -> int:
        """Concurrency slots held by the runs this tracker follows (a metric)."""
        return sum(len(slots) for slots in self._held.values())

    def waiting_for_slot(self) -> int:
        """Runs queued in AwaitingConcurrencySlot (a metric)."""
        return len(self._queued)

    async def start_queued(self) -> None:
        """Start AwaitingConcurrencySlot runs, oldest first, while slots are free."""
        waiting = sorted((self.runs[key] for key in self._queued), key=lambda r: (r.created, r.id))
        for run in waiting:
            deployment = self.deployment_of(run.deployment_name or "")
            if deployment is None:
                continue
            limits = await self._creator.limits_for(deployment, run.tags)
            if not await self._creator.take_slots(run.id, limits):
                continue
            self._held.pop(run.id, None)
            try:
                started = await self._creator.move(run, "Scheduled", "a concurrency slot is free")
            except TransitionRejected:
                continue
            self._apply(started.id, started.model_dump_json().encode())
            await self._creator.finish(started)

