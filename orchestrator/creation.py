"""Flow-run creation, exactly once, whatever fails or runs twice.

1. The run id is deterministic (trigger + event, manual request, schedule slot).
2. Concurrency slots are taken with the run id as holder (taking again is a no-op).
3. The record is created in ``flowbus-flow-runs`` with KV ``create``: of two racers
   (a redelivery, a restart, two orchestrators) exactly one stores it; the other
   reads the stored record and carries on with *that*.
4. The job goes to ``<ns>.runs.<work-pool>`` with ``Nats-Msg-Id: <id>:<attempt>``
   whenever the stored record is Scheduled or Late and due, so a restart between
   record and job re-publishes it, and JetStream stores one copy.
5. Then the state event; only then does the caller ack the triggering event.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import concurrency
from events.bus import MSG_ID_HEADER, Bus
from events.cloudevent import CloudEvent
from events.errors import AlreadyExists, PublishFailed, TransitionRejected, UpdateConflict
from events.kv import KV
from events.kv_window import KVWindow
from events.records import Deployment, FlowRun, State
from events.runs import Job, state_change_event
from orchestrator.metrics import JOB_TIMES, Metrics
from orchestrator.settings import OrchestratorSettings
from orchestrator.types import Clock

log = logging.getLogger("flowbus.orchestrator.creation")

SOURCE = "flowbus/orchestrator"
RUNNABLE = frozenset({"Scheduled", "Late", "AwaitingRetry", "Resuming"})
PUBLISHED_KEPT = 100_000


@dataclass(frozen=True)
class RunRequest:
    """Everything a new flow run is made from."""

    flow_run_id: str
    deployment: Deployment
    origin: str
    parameters: dict[str, Any]
    expected_start_time: datetime
    idempotency_key: str
    tags: list[str] = field(default_factory=list)
    name: str | None = None
    triggering_event: dict[str, Any] | None = None
    refused: str | None = None  # why its parameters cannot run: stored Failed, never run


def make_state(name: str, when: datetime, message: str | None = None) -> State:
    return State(type=State.named(name).type, name=name, message=message, timestamp=when)


def state_event(run: FlowRun) -> CloudEvent:
    """The ``flowbus.flow-run.<State>`` event of a record, as the orchestrator sends it."""
    return state_change_event(run, source=SOURCE, stamped=True)


class RunCreator:
    """Creates runs and publishes their jobs and state events."""

    def __init__(
        self, bus: Bus, runs: KV, slots: KV, settings: OrchestratorSettings, metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._bus = bus
        self._runs = runs
        self._slots = slots
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        # Jobs this process published (bounded): the tracker does not publish them again.
        self._published: OrderedDict[str, None] = OrderedDict()
        # Runs this process stored without any concurrency limit (bounded): they hold no
        # slot, so the tracker need not look for one when they finish or live on.
        self._slotless: OrderedDict[str, None] = OrderedDict()
        self._window: KVWindow | None = None

    def was_published(self, run: FlowRun) -> bool:
        return f"{run.id}:{run.run_count + 1}" in self._published

    def holds_no_slots(self, run_id: str) -> bool:
        """True when this process created ``run_id`` under no concurrency limit (so it
        never holds a slot); False when it does not know."""
        return run_id in self._slotless

    async def limits_for(self, deployment: Deployment, tags: list[str]) -> list[tuple[str, int]]:
        """(limit name, size) of every concurrency limit a run of ``deployment`` is under."""
        limits = []
        if deployment.concurrency_limit:
            limits.append((f"deployment-{deployment.name}", deployment.concurrency_limit))
        for tag in sorted(set(tags)):
            size = await concurrency.get_limit(self._slots, f"tag-{tag}")
            if size is not None:
                limits.append((f"tag-{tag}", size))
        return limits

    async def take_slots(self, run_id: str, limits: list[tuple[str, int]]) -> bool:
        """Take a slot of every limit for ``run_id``, or none; record what is held."""
        taken: list[concurrency.Slot] = []
        now = self._clock()
        for name, size in limits:
            slot = await concurrency.acquire(
                self._slots, name, size, run_id, ttl=self._settings.slot_ttl_seconds, now=now
            )
            if slot is None:
                await concurrency.release_all(self._slots, taken)
                return False
            taken.append(slot)
        if taken:
            await self._slots.put(f"held.{run_id}", json.dumps([s.key for s in taken]).encode())
        return True

    async def create(self, request: RunRequest) -> FlowRun:
        """The run for ``request``: created now, or as a previous attempt left it."""
        deployment = request.deployment
        tags = sorted({*deployment.tags, *request.tags})
        limits = [] if request.refused else await self.limits_for(deployment, tags)
        if limits:
            # Read first: a redelivered request must not take slots for a run that is
            # already stored. Without limits, ``create`` alone tells (AlreadyExists).
            existing = await self._runs.get(request.flow_run_id, latest=True)
            if existing is not None:
                return await self._existing(request, existing.value)
        initial, cancel = ("Failed" if request.refused else "Scheduled"), False
        if limits and not await self.take_slots(request.flow_run_id, limits):
            # Stored waiting first even for CANCEL_NEW: a crash before the cancel then
            # leaves a queued run, never one over the limit.
            initial = "AwaitingConcurrencySlot"
            cancel = deployment.collision_strategy == "CANCEL_NEW"
        now = self._clock()
        run = FlowRun(
            id=request.flow_run_id,
            name=request.name or f"{deployment.name}-{request.flow_run_id[:8]}",
            flow_name=deployment.flow_name,
            deployment_id=deployment.id,
            deployment_name=deployment.name,
            work_pool=deployment.work_pool,
            parameters=request.parameters,
            tags=tags,
            state=make_state(initial, now, request.refused),
            expected_start_time=request.expected_start_time,
            created=now,
            updated=now,
            idempotency_key=request.idempotency_key,
            triggering_event=request.triggering_event,
            retries=deployment.retries,
            retry_delay_seconds=deployment.retry_delay_seconds,
            durable_tasks=deployment.durable_tasks,
        )
        try:
            revision = await self._create(run.id, run.model_dump_json().encode())
            if not limits:
                self._slotless[run.id] = None
                while len(self._slotless) > PUBLISHED_KEPT:
                    self._slotless.popitem(last=False)
            self._metrics.runs.labels(request.origin, "created").inc()
            if request.refused:
                log.warning("flow run %s of deployment %s refused: %s", run.id, deployment.name,
                            request.refused)
        except AlreadyExists:
            stored = await self._runs.get(run.id, latest=True)  # a replica may lag (events.kv)
            if stored is None:  # created, then deleted at once: try the event again later
                raise
            return await self._existing(request, stored.value)
        if cancel:
            run = await self.move(run, "Cancelled", "concurrency limit reached (CANCEL_NEW)")
        await self.finish(run, None if cancel else revision)
        return run

    async def _create(self, key: str, value: bytes) -> int:
        """KV ``create``: first as a compare-and-set on an empty key through the window
        (sent with the other creations of the moment); a key with any history (a
        record, or a deleted one's marker) takes KV ``create``, which tells them apart."""
        window = self._window
        if window is None:
            window = await KVWindow.open(self._bus, self._runs.name)
            if self._window is None:
                self._window = window
            else:  # another creation opened one meanwhile
                await window.close()
                window = self._window
        try:
            return await window.cas(key, value, 0)
        except (UpdateConflict, PublishFailed):
            # A key with history, or JetStream refused the window's write (a stream
            # without a leader, say): KV ``create`` tells and raises its own errors.
            return await self._runs.create(key, value)

    async def close(self) -> None:
        if self._window is not None:
            window, self._window = self._window, None
            await window.close()

    async def _existing(self, request: RunRequest, stored: bytes) -> FlowRun:
        run = FlowRun.model_validate_json(stored)
        self._metrics.runs.labels(request.origin, "existing").inc()
        await self.finish(run)
        return run

    async def finish(self, run: FlowRun, revision: int | None = None) -> None:
        """Publish what a stored record still needs: its job when due, its state event.

        ``revision``: the revision ``run`` is stored at, when known: the job then
        carries the record, so the runner claims without reading it first.
        """
        if run.state.name in RUNNABLE and run.expected_start_time <= self._clock():
            await self.publish_job(run, announce=True, revision=revision)
        else:
            await self.publish_state(run)

    async def publish_state(self, run: FlowRun) -> None:
        await self._bus.publish(state_event(run))

    async def publish_job(self, run: FlowRun, *, announce: bool = False,
                          revision: int | None = None) -> None:
        """Publish ``run``'s job; with ``announce``, its state event in the same window.

        One pipelined window is one round trip; both messages are stored before this
        returns, and each carries a message id, so doing it again is harmless. With
        ``revision`` (``run`` is stored at it), the job carries the record when it fits.
        """
        job = Job.of(run, revision)
        messages: list[tuple[str, bytes, dict[str, str] | None]] = [
            (self._bus.layout.runs_subject(run.work_pool), job.encode_small(),
             {MSG_ID_HEADER: job.msg_id})]
        if announce:
            messages.append(self._bus.event_message(state_event(run)))
        await self._bus.publish_raw_many(messages)
        self._published_job(run)

    def _published_job(self, run: FlowRun) -> None:
        self._published[Job.of(run).msg_id] = None
        times = JOB_TIMES.get()
        if times is not None:
            times.append(time.perf_counter())
        while len(self._published) > PUBLISHED_KEPT:
            self._published.popitem(last=False)

    async def move(self, run: FlowRun, state_name: str, message: str | None = None, *,
                   unchanged: bool = False, **changes: Any) -> FlowRun:
        """CAS the record from ``run``'s state to ``state_name``; the stored record after.

        Raises :class:`TransitionRejected` when the stored record may not move so, or,
        with ``unchanged``, when it was updated since ``run`` was read (a heartbeat).
        """
        target: list[FlowRun] = []

        def step(raw: bytes | None) -> bytes | None:
            if raw is None:
                raise TransitionRejected(f"flow run {run.id} disappeared")
            current = FlowRun.model_validate_json(raw)
            if current.state.name != run.state.name:
                raise TransitionRejected(
                    f"flow run {run.id} is {current.state.name}, no longer {run.state.name}"
                )
            if unchanged and current.updated != run.updated:
                raise TransitionRejected(f"flow run {run.id} was updated meanwhile")
            new = current.transition(make_state(state_name, self._clock(), message), **changes)
            new = new.model_copy(update={"updated": self._clock()})
            target[:] = [new]
            return new.model_dump_json().encode()

        try:
            await self._runs.update(run.id, step)
        except UpdateConflict:
            raise TransitionRejected(f"flow run {run.id}: gave up moving it to {state_name}") from None
        self._metrics.transitions.labels(state_name).inc()
        return target[0]

    async def emit_failure(self, key: str, reason: str, data: dict[str, Any]) -> None:
        """``flowbus.automation.action.failed``: a run that should have started did not."""
        log.warning("no run created: %s", reason)
        self._metrics.failures.labels(data.get("kind", "other")).inc()
        event = CloudEvent.create(
            "flowbus.automation.action.failed",
            source=SOURCE,
            id=f"{key}:failed",
            subject=f"flowbus.deployment.{data.get('deployment', 'unknown')}",
            data={"reason": reason, **data},
        )
        await self._bus.publish(event)
