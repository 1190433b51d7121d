"""The orchestrator service: leadership, the event consumer, and the periodic checks.

Every instance keeps the deployment catalog and trigger index current (so a
standby takes over hot). Only the leader consumes ``<NS>_EVENTS`` through the durable
pull consumer, fetching only as many events as it has free slots, and runs the
ticks (proactive deadlines, schedules, due/late/crashed runs, queued runs), and
answers the API's cancel and resume requests (:mod:`orchestrator.control`). An
event is acked after every run it caused has its record, job and state event.

>>> async def main(stop: asyncio.Event) -> None:
...     await serve(NatsSettings(), OrchestratorSettings(), stop=stop)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time

from events import concurrency
from events.aio import cancel_and_wait
from events.automation_store import REDRIVE_REQUESTED, count_dead_letters
from events.bus import Bus, Consumer, Delivery
from events.errors import FlowbusError, InvalidEvent, is_transient
from events.records import utcnow
from events.runs import RUN_REQUESTED
from events.settings import NatsSettings
from events.subjects import event_type_of, is_control_type, on_own_subject
from orchestrator.assets import AssetIndexer
from orchestrator.automations.engine import AutomationEngine
from orchestrator.automations.settings import AutomationSettings
from orchestrator.control import ControlDesk
from orchestrator.creation import RunCreator
from orchestrator.deployments import DeploymentCatalog
from orchestrator.dispatch import Dispatcher
from orchestrator.evaluator import TriggerEvaluator
from orchestrator.index import EventView
from orchestrator.leader import LeaderLease
from orchestrator.metrics import JOB_TIMES, Metrics
from orchestrator.runs import RunTracker
from orchestrator.scheduler import Scheduler
from orchestrator.settings import OrchestratorSettings
from orchestrator.types import Clock

log = logging.getLogger("flowbus.orchestrator")



class Orchestrator:
    """One orchestrator instance on a connected bus."""

    def __init__(
        self, bus: Bus, settings: OrchestratorSettings, *, clock: Clock = utcnow,
        metrics: Metrics | None = None, identity: str | None = None,
        automation_settings: AutomationSettings | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.automation_settings = automation_settings or AutomationSettings()
        self.clock = clock
        self.metrics = metrics or Metrics()
        self._identity = identity
        self.leading = asyncio.Event()
        self.consuming = asyncio.Event()
        self.ready = asyncio.Event()
        self._consumer: Consumer | None = None

    async def _setup(self) -> None:
        layout = self.bus.layout
        self.catalog = DeploymentCatalog(await self.bus.kv(layout.deployments))
        self.evaluator = TriggerEvaluator(await self.bus.kv(layout.trigger_state), self.clock)
        slots = await self.bus.kv(layout.concurrency)
        runs = await self.bus.kv(layout.flow_runs)
        self.creator = RunCreator(self.bus, runs, slots, self.settings, self.metrics, self.clock)
        self.dispatcher = Dispatcher(self.catalog, self.creator, self.metrics, self.clock)
        self.tracker = RunTracker(
            runs, slots, self.creator, self.settings, self.metrics, self.clock,
            deployment_of=self.catalog.get, attempts_kv=await self.bus.kv(layout.attempts),
        )
        self.scheduler = Scheduler(self.catalog, self.creator, self.clock)
        self.control = ControlDesk(self.bus, self.metrics)
        self.lease = LeaderLease(await self.bus.kv(layout.leases), self._identity)
        self.assets = AssetIndexer(self.bus, await self.bus.kv(layout.assets),
                                   durable=f"{self.settings.consumer_name}-assets", clock=self.clock)
        self.automations = AutomationEngine(
            self.bus, self.automation_settings, self.catalog, self.creator, self.clock,
            self.metrics.registry,
            create_requested=lambda e: self.dispatcher.run_requested(EventView(e, self.clock())),
        )
        await self.automations.setup()
        self.catalog.on_change(lambda name, d: self.metrics.triggers.set(len(self.catalog.index)))

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set: follow deployments, lead when the lease allows."""
        await self._setup()
        await self.catalog.load()
        await self.automations.load()
        async with asyncio.TaskGroup() as tg:
            follower = tg.create_task(self._follow_deployments())
            automations = tg.create_task(self.automations.follow())
            self.ready.set()
            try:
                while not stop.is_set():
                    if await self._try_lead(stop):
                        continue
                    await _wait(stop, self._lease_period() / 2)
            finally:
                await cancel_and_wait([follower, automations])
                await self.automations.close()
                await self.creator.close()

    async def _follow_deployments(self) -> None:
        """Keep the catalog current; a broken watch is re-opened (and the catalog re-read)."""
        while True:
            try:
                await self.catalog.follow()
            except Exception as exc:  # NATS went away: watch again once it is back
                log.warning("watching deployments failed, retrying: %r", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self.catalog.load()

    async def _try_lead(self, stop: asyncio.Event) -> bool:
        """Lead while the lease holds; False when another instance leads.

        A failure while leading is logged and leadership retried, never fatal.
        """
        try:
            if not await self.lease.try_acquire():
                return False
            await self._lead(stop)
        except* Exception as group:  # lost NATS or a bug: log, stand down, try again
            log.error("leading failed, retrying: %r", group.exceptions[0],
                      exc_info=group.exceptions[0])
            await _wait(stop, 1.0)
        return True

    def _lease_period(self) -> float:
        return self.bus.settings.lease_ttl_seconds * self.settings.lease_renew_fraction

    async def _lead(self, stop: asyncio.Event) -> None:
        halt = asyncio.Event()
        self.leading.set()
        self.metrics.leader.set(1)
        try:
            # The tracker's watch delivers the current records first: no separate load,
            # so a standby starts consuming at once.
            await self.evaluator.arm(self.catalog.index)
            await self.automations.arm()
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._keep_lease(stop, halt)),
                    tg.create_task(self.tracker.follow(halt)),
                    tg.create_task(self._ticks(halt)),
                    tg.create_task(self.assets.run(halt)),
                    # The API's cancel and resume: answered by the leader only.
                    tg.create_task(self.control.serve(halt)),
                ]
                await self._consume(halt)
                await cancel_and_wait(tasks)
        finally:
            self.leading.clear()
            self.consuming.clear()
            self.metrics.leader.set(0)
            if stop.is_set():
                await self.lease.release()

    async def _keep_lease(self, stop: asyncio.Event, halt: asyncio.Event) -> None:
        try:
            while not halt.is_set():
                await _wait(stop, self._lease_period())
                if stop.is_set() or not await self.lease.renew():
                    return
        finally:
            halt.set()

    async def _ticks(self, halt: asyncio.Event) -> None:
        while not halt.is_set():
            try:
                await self.tick()
            except Exception as exc:  # NATS hiccups included: the next tick retries
                log.warning("periodic check failed, retrying next tick: %r", exc)
            await _wait(halt, self.settings.tick_seconds)

    async def tick(self) -> None:
        """One round of the time-driven work (tests call it with an injected clock)."""
        if self.catalog.retired:
            retired, self.catalog.retired = self.catalog.retired, set()
            await self.evaluator.purge(self.catalog.index, retired)
        for firing in await self.evaluator.sweep(self.catalog.index):
            await self.dispatcher.fire(firing)
            await self.evaluator.confirm(firing)
        await self.scheduler.tick()
        await self.tracker.tick()
        await self.automations.tick()
        await self._observe()

    async def _observe(self) -> None:
        """Refresh the gauges read from JetStream and the run tracker."""
        self.metrics.slots_in_use.set(self.tracker.slots_held())
        self.metrics.runs_waiting.set(self.tracker.waiting_for_slot())
        limits = await concurrency.list_limits(await self.bus.kv(self.bus.layout.concurrency))
        self.metrics.limit_slots_in_use.clear()
        self.metrics.limit_waiters.clear()
        for limit in limits:
            self.metrics.limit_slots_in_use.labels(limit.name).set(limit.active_slots)
            self.metrics.limit_waiters.labels(limit.name).set(limit.waiters)
        self.automations.metrics.dead_letters_waiting.set(await count_dead_letters(self.bus))
        if self._consumer is not None:
            info = await self._consumer.info()
            self.metrics.consumer_pending.set(info.num_pending or 0)
            self.metrics.consumer_ack_pending.set(info.num_ack_pending or 0)

    async def _consume(self, halt: asyncio.Event) -> None:
        settings = self.settings
        consumer = await self.bus.consumer(
            settings.consumer_name,
            filter_subjects=[f"{self.bus.layout.events_prefix}.>"],
            ack_wait=settings.ack_wait_seconds,
            max_ack_pending=settings.max_in_flight * 4,
            deliver_new=True,
        )
        self._consumer = consumer
        self.consuming.set()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            await self._fetch_loop(consumer, halt, in_flight)
        finally:
            if in_flight:
                _, pending = await asyncio.wait(in_flight, timeout=settings.drain_seconds)
                await cancel_and_wait(pending)
            self._consumer = None
            await consumer.close()

    async def _fetch_loop(
        self, consumer: Consumer, halt: asyncio.Event, in_flight: set[asyncio.Task[None]]
    ) -> None:
        limit = self.settings.max_in_flight
        while not halt.is_set():
            free = limit - len(in_flight)
            if free <= 0:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                deliveries = await consumer.fetch(free, max_wait=self.settings.fetch_wait_seconds)
            except FlowbusError as exc:
                log.warning("fetching events failed: %s", exc)
                await _wait(halt, 1.0)
                continue
            for delivery in deliveries:
                task = asyncio.create_task(self.handle(delivery))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            self.metrics.in_flight.set(len(in_flight))

    def _idle(self, event_type: str) -> bool:
        """True when no trigger, automation or request can act on ``event_type``."""
        if event_type in (RUN_REQUESTED, REDRIVE_REQUESTED):
            return False
        return not (self.catalog.index.candidates(event_type)
                    or self.automations.catalog.index.candidates(event_type))

    def _idle_subject(self, subject: str) -> bool:
        """True when the type ``subject`` carries is one nothing can act on."""
        try:
            return self._idle(event_type_of(self.bus.layout.namespace, subject))
        except ValueError:  # not an events subject
            return False

    async def handle(self, delivery: Delivery) -> None:
        """Match one event, create the runs it causes, then ack it."""
        started = time.perf_counter()
        job_times: list[float] = []
        JOB_TIMES.set(job_times)
        try:
            if self._idle_subject(delivery.subject):
                # Its subject names a type no trigger, automation or request acts on
                # (most often the state events of runs): acked without being decoded.
                # Every part publishes an event on its own type's subject; a body
                # claiming another type on such a subject is not looked at.
                await delivery.ack(confirm=False)
                self.metrics.events.labels("unmatched").inc()
                return
            try:
                event = delivery.event
            except InvalidEvent as exc:
                log.warning("dropping a message that is not a CloudEvent: %s", exc)
                self.metrics.events.labels("invalid").inc()
                await delivery.term()
                return
            if is_control_type(event.type) and not on_own_subject(
                    self.bus.layout.namespace, delivery.subject, event.type):
                log.warning("dropping a %r event published on %r, not its own subject",
                            event.type[:100], delivery.subject[:200])
                self.metrics.events.labels("forged").inc()
                await delivery.term()
                return
            view = EventView(event, delivery.timestamp, len(delivery.data))
            if event.type == RUN_REQUESTED:
                await self.dispatcher.run_requested(view)
            leaves = await self.catalog.index.match_async(view)
            self.metrics.evaluations.inc(len(leaves))
            if leaves:
                for firing in await self.evaluator.on_event(self.catalog.index, view, leaves):
                    await self.dispatcher.fire(firing)
            if job_times:
                self.metrics.latency.observe(job_times[0] - started)
                self.metrics.latency_samples.append(job_times[0] - started)
                stored = time.time() - delivery.timestamp.timestamp() - (time.perf_counter() - started)
                self.metrics.stored_latency_samples.append(stored + job_times[0] - started)
            await self.automations.on_event(view, delivery.in_progress)
            await self._report_over_budget(view)
            # An event nothing could react to is acked without waiting for JetStream's
            # confirmation: those acks leave in shared socket writes. Should one be
            # lost, the event comes back after the ack wait and matches nothing again.
            await delivery.ack(confirm=bool(leaves) or not self._idle(event.type))
            self.metrics.events.labels("matched" if leaves else "unmatched").inc()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(delivery.nak(), 1.0)
            raise
        except Exception as exc:  # one bad event must not stop the consumer; it is redelivered
            self.metrics.events.labels("error").inc()
            with contextlib.suppress(Exception):
                if is_transient(exc):
                    # NATS unreachable or electing a leader: not the event's fault, so it
                    # never counts towards giving up (an outage longer than
                    # max_deliveries seconds would otherwise drop accepted events).
                    log.warning("handling an event failed, NATS is unavailable; it will be "
                                "redelivered: %r", exc)
                    await delivery.nak(delay=min(5.0, float(delivery.num_delivered)))
                    return
                if delivery.num_delivered >= self.settings.max_deliveries:
                    log.error("giving up on an event after %d attempts: %r",
                              delivery.num_delivered, exc)
                    await delivery.term()
                    return
                log.warning("handling an event failed; it will be redelivered: %r", exc)
                await delivery.nak(delay=1.0)


    async def _report_over_budget(self, view: EventView) -> None:
        """A dead letter (``flowbus.automation.action.failed``) and a count per trigger whose
        ``when`` went over its budget for this event: that firing failed, nothing else."""
        for tid, reason in view.over_budget.items():
            deployed = self.catalog.index.get(tid)
            owner = deployed.deployment.name if deployed and deployed.deployment else None
            automation = None if owner else self.automations.catalog.owner(tid)
            digest = hashlib.blake2b(f"{view.key}\x1f{tid}".encode(), digest_size=12).hexdigest()
            data: dict[str, str] = {"kind": "when_over_budget", "trigger": tid,
                                    "event": view.event.id[:256], "event_type": view.event.type}
            if owner:
                data["deployment"] = owner
            if automation is not None:
                data["automation"] = automation.id
            await self.creator.emit_failure(f"when:{digest}", f"'when' not evaluated: {reason}", data)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``event`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def serve(
    nats_settings: NatsSettings, settings: OrchestratorSettings, *,
    ready: asyncio.Event | None = None, stop: asyncio.Event,
) -> None:
    """Run an orchestrator until ``stop`` is set; ``ready`` once the catalog is loaded."""
    async with await Bus.connect(nats_settings, name="flowbus-orchestrator") as bus:
        orchestrator = Orchestrator(bus, settings)
        http = None
        if settings.metrics_port is not None:
            from prometheus_client import start_http_server

            http, _ = start_http_server(settings.metrics_port, settings.metrics_host,
                                        registry=orchestrator.metrics.registry)
        try:
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(orchestrator.run(stop))
                if ready is not None:
                    tg.create_task(_signal(orchestrator.ready, ready, runner))
        finally:
            if http is not None:
                http.shutdown()
                http.server_close()


async def _signal(source: asyncio.Event, target: asyncio.Event, runner: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(source.wait())
    await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if source.is_set():
        target.set()

