"""The runner: takes flow-run jobs of its pool, executes them, records what happened.

::

    stop = asyncio.Event()
    await serve(NatsSettings(), RunnerSettings(pool="default"), stop=stop)

One durable pull consumer per pool (``pool-<pool>``, shared by all its runners: the
runs stream is a work queue), fetching only as many jobs as there are free slots.
Each job: claim the run by compare-and-set, execute it (:mod:`runners.workers` or
:mod:`runners.inline`, from :mod:`runners.specs`), keep the job alive with in-progress
acks and the record's ``updated`` time fresh (the heartbeat, :mod:`runners.liveness`),
record the final state and result, ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from events import attempts, pauses
from events.aio import cancel_and_wait
from events.bus import Bus, Consumer, Delivery
from events.errors import FlowbusError, TransitionRejected, UpdateConflict
from events.kv import KV, Objects
from events.kv_window import KVWindow
from events.records import FlowRun, State, utcnow
from events.runs import Job, parse_job
from events.settings import NatsSettings
from flowbus.entrypoints import resolve_entrypoint
from runners import claims, suspension
from runners.liveness import Liveness
from runners.metrics import RunnerMetrics, start_metrics_server
from runners.records import HeldRun, Recorder, dump, quietly
from runners.registry import Registration
from runners.settings import RunnerSettings
from runners.specs import Resolver, code_root, run_spec
from runners.types import Execution, Executor, FlowInfo, Outcome

log = logging.getLogger("flowbus.runner")


class Runner:
    """One runner process's service (see the module docstring)."""

    def __init__(self, bus: Bus, settings: RunnerSettings, executor: Executor, *,
                 metrics: RunnerMetrics | None = None, resolver: Resolver = resolve_entrypoint,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.bus = bus
        self.settings = settings
        self.executor = executor
        self.metrics = metrics or RunnerMetrics(pool=settings.pool)
        self._resolve = resolver
        self._clock = clock
        self._held: dict[str, HeldRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._kv: KV | None = None
        self._records: Recorder | None = None
        self._results: Objects | None = None
        self._attempts: KV | None = None
        self.metrics_port: int | None = None

    @property
    def kv(self) -> KV:
        assert self._kv is not None, "the runner is not started"
        return self._kv

    @property
    def records(self) -> Recorder:
        assert self._records is not None, "the runner is not started"
        return self._records

    @property
    def free_slots(self) -> int:
        return self.settings.limit - len(self._tasks)

    # --- the service --------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set, then drain (see :meth:`_drain`)."""
        layout = self.bus.layout
        self._kv = await self.bus.kv(layout.flow_runs)
        self._attempts = await self.bus.kv(layout.attempts)
        self._results = await self.bus.objects(layout.results)
        window = await KVWindow.open(self.bus, layout.flow_runs)
        self._records = Recorder(self.bus, self._kv, self.settings.runner_id,
                                 attempts=self._attempts, results=self._results, window=window)
        registration = Registration(await self.bus.kv(layout.runners), self.settings,
                                    lambda: len(self._tasks), lambda: list(self._held))
        consumer = await self.bus.consumer(
            self.settings.consumer_name, stream=layout.runs_stream,
            filter_subjects=[layout.runs_subject(self.settings.pool)],
            ack_wait=self.settings.ack_wait,
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(window.close)
            await self.executor.start()
            stack.push_async_callback(self.executor.close)
            if self.settings.metrics_port is not None:
                site = await start_metrics_server(self.metrics, self.settings.metrics_host,
                                                  self.settings.metrics_port)
                stack.push_async_callback(site.cleanup)
                from runners.metrics import bound_port

                self.metrics_port = bound_port(site)
            liveness = Liveness(self.settings, self.executor, self._held, self._records,
                                self._kv, self.metrics)
            background = [
                asyncio.create_task(liveness.heartbeats(), name="flowbus-runner-heartbeats"),
                asyncio.create_task(liveness.watch_records(), name="flowbus-runner-watch"),
                asyncio.create_task(registration.beats(), name="flowbus-runner-registry"),
            ]
            try:
                await registration.write()
                self.metrics.free_slots.set(self.free_slots)
                if ready is not None:
                    ready.set()
                log.info("runner %s serving pool %r (limit %d, %s isolation)",
                         self.settings.runner_id, self.settings.pool, self.settings.limit,
                         self.settings.isolation)
                await self._fetch_loop(consumer, stop)
                await self._drain()
            finally:
                await cancel_and_wait(background)
                await registration.remove()
                await consumer.close()

    async def _fetch_loop(self, consumer: Consumer, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if self.free_slots <= 0:
                    self._slot_freed.clear()
                    freed = asyncio.create_task(self._slot_freed.wait())
                    await asyncio.wait({freed, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    freed.cancel()
                    continue
                try:
                    deliveries = await consumer.fetch(self.free_slots, self.settings.fetch_wait)
                except FlowbusError as exc:
                    log.warning("fetching jobs failed: %s; retrying", exc)
                    await asyncio.sleep(min(1.0, self.settings.fetch_wait))
                    continue
                for delivery in deliveries:
                    if stop.is_set():
                        await quietly(delivery.nak())
                        continue
                    self._start(self._handle(delivery))
        finally:
            stopping.cancel()

    def _start(self, coro: Any) -> None:
        task = asyncio.create_task(coro, name="flowbus-runner-job")
        self._tasks.add(task)
        self.metrics.free_slots.set(self.free_slots)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._slot_freed.set()
            self.metrics.free_slots.set(self.free_slots)
            if not t.cancelled() and t.exception() is not None:
                log.error("a job failed unexpectedly", exc_info=t.exception())

        task.add_done_callback(done)

    async def _drain(self) -> None:
        """Let running flows finish within the drain timeout; hand back the others."""
        if not self._tasks:
            return
        log.info("draining: %d run(s) have %.1fs to finish", len(self._tasks),
                 self.settings.drain_timeout)
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.drain_timeout)
        if not pending:
            return
        for held in list(self._held.values()):
            held.stop_for("drain")
        await asyncio.wait(pending, timeout=30)

    # --- one job --------------------------------------------------------------

    async def _handle(self, delivery: Delivery) -> None:
        try:
            job = parse_job(delivery.data)
        except (ValueError, ValidationError) as exc:
            log.warning("dropping a malformed run job: %s", str(exc).splitlines()[0])
            self.metrics.jobs.labels("malformed").inc()
            await quietly(delivery.term())
            return
        held = await self._claim(delivery, job)
        if held is None:
            self.records.written.pop(job.flow_run_id, None)  # a takeover's writes
            return
        self._held[held.run.id] = held
        self.metrics.active.inc()
        try:
            await self._execute(held)
        finally:
            self._held.pop(held.run.id, None)
            self.records.written.pop(held.run.id, None)
            self.metrics.active.dec()

    async def _claim(self, delivery: Delivery, job: Job) -> HeldRun | None:
        # The first read may be answered by any replica of the bucket; on a cluster one
        # that lags shows no record yet, or a step already overwritten (Crashed before
        # AwaitingRetry). So a job is only dropped on the stream leader's answer, and
        # every read after a lost compare-and-set asks the leader (events.kv).
        latest = False
        if job.record is not None and job.revision is not None:
            held = await self._claim_carried(delivery, job, job.record, job.revision)
            if held is not None:
                return held
            latest = True  # not claimed on the carried record: read it, from the leader
        for _ in range(20):
            entry = await self.kv.get(job.flow_run_id, latest=latest)
            if entry is None:
                if not latest:
                    latest = True
                    continue
                log.warning("job for flow run %s, which has no record: dropped", job.flow_run_id)
                self.metrics.jobs.labels("drop").inc()
                await quietly(delivery.ack())
                return None
            try:
                run = FlowRun.model_validate_json(entry.value)
            except ValidationError:
                log.error("the record of flow run %s is unreadable: job dropped", job.flow_run_id)
                self.metrics.jobs.labels("malformed").inc()
                await quietly(delivery.term())
                return None
            decision = claims.decide(
                run, job, runner_id=self.settings.runner_id, holding=run.id in self._held,
                now=self._clock(), stale_after=self.settings.stale_after,
            )
            if decision.action == "drop" and not latest:
                latest = True
                continue
            self.metrics.jobs.labels(decision.action).inc()
            latest = True
            try:
                if decision.action == "drop":
                    await quietly(delivery.ack())
                    return None
                if decision.action == "later":
                    delay = decision.delay if decision.delay is not None else self.settings.stale_after
                    await quietly(delivery.nak(delay=delay))
                    return None
                if decision.action == "crashed":
                    if not await self._take_over(run, entry.revision, decision.reason):
                        await quietly(delivery.ack())
                        return None
                    continue  # read again and claim the retry
                return await self._claim_waiting(delivery, run, entry.revision)
            except (UpdateConflict, TransitionRejected):
                continue  # someone else changed the record: look again
        await quietly(delivery.nak(delay=self.settings.stale_after))
        return None

    async def _claim_carried(self, delivery: Delivery, job: Job, run: FlowRun,
                             revision: int) -> HeldRun | None:
        """Claim on the record the job carries (its revision fences the compare-and-set,
        as a read's would); None when that record no longer stands or would not be claimed."""
        decision = claims.decide(
            run, job, runner_id=self.settings.runner_id, holding=run.id in self._held,
            now=self._clock(), stale_after=self.settings.stale_after,
        )
        if decision.action != "claim":
            return None
        try:
            held = await self._claim_waiting(delivery, run, revision)
        except (UpdateConflict, TransitionRejected):
            return None
        self.metrics.jobs.labels("claim").inc()
        return held

    async def _take_over(self, run: FlowRun, revision: int, reason: str) -> bool:
        """Settle a dead runner's attempt (events.attempts); True if a retry is due now."""
        assert self._attempts is not None
        settled, steps = await attempts.take_over(self._attempts, run, reason, self._clock())
        for step in steps:
            revision = await self.records.cas(run.id, dump(step), revision)
            await self.records.announce(step)
            self.metrics.runs.labels(step.state.name, run.deployment_name or "").inc()
        if settled is not None and settled.kind == "outcome":
            await self.records.log(run.id, logging.WARNING, (
                f"Attempt {run.run_count} finished ({settled.state_name}) but its runner "
                f"stopped before recording it ({reason}); concluded from its recorded outcome"))
            return False
        await self.records.log(run.id, logging.WARNING, (
            f"The claim by {run.runner_id} did not finish ({reason}); handed back"
            if settled is None else f"Attempt {run.run_count} crashed: {reason}"))
        last = steps[-1]
        return (last.state.name in ("AwaitingRetry", "Scheduled")
                and last.expected_start_time <= self._clock())

    async def _claim_waiting(self, delivery: Delivery, run: FlowRun, revision: int) -> HeldRun:
        now = self._clock()
        # Only a runner that fences its workers may promise when its attempt is dead.
        fenced = None if self.settings.isolation == "inline" else self.settings.stale_after
        # One compare-and-set stores Running with the attempt and runner id: Pending
        # is announced (_announce_claim), never stored on its own.
        _, running = claims.claimed(run, self.settings.runner_id, now, fenced)
        revision = await self.records.cas(run.id, dump(running), revision)
        self.metrics.start_latency.observe(
            max(0.0, (now - run.expected_start_time).total_seconds()))
        deployment = await self.records.deployment(run.deployment_name)
        loop = asyncio.get_running_loop()
        return HeldRun(delivery, running, revision, running.run_count, deployment,
                       loop.create_future(), started=time.monotonic())

    # --- execution ----------------------------------------------------------------

    async def _execute(self, held: HeldRun) -> None:
        root = await code_root(self.bus, held)
        spec = root if isinstance(root, str) else run_spec(held, self.settings, self._resolve, root)
        announce = asyncio.create_task(self._announce_claim(held))
        if isinstance(spec, str):
            await announce
            await self.records.log(held.run.id, logging.ERROR, spec)
            await self._finish(held, Outcome("final", "Failed", spec))
            return
        held.spec = spec
        execution = held.execution = await self.executor.execute(spec)
        outcome = await self._follow(held, execution)
        await announce
        await self._conclude(held, outcome)

    async def _announce_claim(self, held: HeldRun) -> None:
        pending = held.run.model_copy(
            update={"state": State.named("Pending", data=held.run.state.data)})
        await self.records.announce_many([pending, held.run])

    async def _follow(self, held: HeldRun, execution: Execution) -> Outcome:
        """Wait for the attempt, enforcing its timeout and reacting to stop signals."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        info: FlowInfo | None = None
        while True:
            waits: set[asyncio.Future[Any]] = {execution.finished, held.signal}
            if info is None and not execution.loaded.cancelled():
                waits.add(execution.loaded)
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if execution.finished.done():
                return execution.finished.result()
            if held.signal.done():
                await execution.stop()
                return Outcome("stopped", extra={"reason": held.signal.result()})
            if info is None and execution.loaded.done() and not execution.loaded.cancelled():
                info = held.info = execution.loaded.result()
                if info.timeout_seconds is not None:
                    deadline = loop.time() + info.timeout_seconds + self.settings.timeout_grace
                # Recorded before the body may start: a crash from here on counts
                # against the run's retries (docs/runners.md, "Retries after a crash").
                if not await self.records.write(held, claims.body_started):
                    await execution.stop()
                    return Outcome("stopped", extra={"reason": "lost"})
                execution.go()
                continue
            if deadline is not None and loop.time() >= deadline:
                await execution.stop()
                assert info is not None
                return Outcome("timeout", "Failed", (
                    f"Flow run exceeded its timeout of {info.timeout_seconds} seconds and did "
                    f"not stop; the runner stopped it {self.settings.timeout_grace}s later"))

    async def _conclude(self, held: HeldRun, outcome: Outcome) -> None:
        self.metrics.logs_shipped.inc(outcome.logs_shipped)
        self.metrics.logs_dropped.inc(outcome.logs_dropped)
        self.metrics.observe_restarts(self.executor.restarts())
        if outcome.kind == "died":
            await self.records.log(held.run.id, logging.ERROR, outcome.message or "worker died")
            await self._crashed(held, outcome.message or "the worker process died")
            return
        if outcome.kind != "stopped":
            if outcome.kind == "timeout" and outcome.message:
                await self.records.log(held.run.id, logging.ERROR, outcome.message)
            await self._finish(held, outcome)
            return
        reason = outcome.extra.get("reason")
        if reason == "cancel":
            await self._cancelled(held)
        elif reason == "suspend":
            await suspension.release(self.records, held)
        elif reason == "drain":
            await self._hand_back(held)
        # "lost": another runner or an operator changed the record; it is theirs now.

    async def _finish(self, held: HeldRun, outcome: Outcome) -> None:
        held.finishing = True  # no heartbeat write may race the final one
        if not outcome.recorded:  # inline, a timeout, or a worker without NATS
            stored = await self.records.store_outcome(held, outcome)
            if stored is None:
                return
            outcome = stored
        if outcome.state_name == "Suspended":  # the body suspended itself (runners.suspension)
            if await suspension.release(self.records, held):
                self.metrics.runs.labels("Suspended", held.run.deployment_name or "").inc()
            return
        state = State.named(outcome.state_name, message=outcome.message,
                            data=held.run.state.data)

        def final(run: FlowRun) -> FlowRun:
            return run.transition(state, end_time=utcnow(), result_ref=outcome.result_ref)

        if await self.records.write(held, final):
            self.metrics.runs.labels(outcome.state_name, held.run.deployment_name or "").inc()
            self.metrics.duration.observe(time.monotonic() - held.started)
            if outcome.state_name in ("Failed", "Crashed"):
                # One line on the runner's console (the traceback is in the run's logs).
                first = (outcome.message or "").strip().splitlines()[-1:] or [""]
                log.warning("flow run %s (%s) %s: %s", held.run.id, held.run.name,
                            outcome.state_name, first[0][:300])
            await self._announce_and_ack(held)

    async def _crashed(self, held: HeldRun, reason: str) -> None:
        """The attempt's worker died: settle it like a takeover would, and retry per policy."""
        held.finishing = True
        if not await self.records.settle_crash(held, reason, self._clock()):
            return
        name = held.run.state.name
        self.metrics.runs.labels("Crashed" if name == "AwaitingRetry" else name,
                                 held.run.deployment_name or "").inc()
        last = held.run
        if last.state.name == "AwaitingRetry":
            # Back to the pool: any runner (this one included) claims the retry when due.
            delay = max(0.0, (last.expected_start_time - self._clock()).total_seconds())
            await quietly(held.delivery.nak(delay=delay))
        else:
            await quietly(held.delivery.ack())

    async def _cancelled(self, held: HeldRun) -> None:
        held.finishing = True
        if held.spec is not None and (held.info is None or held.info.has_cancellation_hooks):
            try:
                await self.executor.run_cancellation_hooks(held.spec, "The run was cancelled.")
            except FlowbusError as exc:
                log.warning("on_cancellation hooks of %s failed: %s", held.run.id, exc)
        state = State.named("Cancelled", message="The run was cancelled; the runner stopped it.",
                            data=held.run.state.data)
        if await self.records.write(held, lambda r: r.transition(state, end_time=utcnow())):
            self.metrics.runs.labels("Cancelled", held.run.deployment_name or "").inc()
            await self._announce_and_ack(held)

    async def _announce_and_ack(self, held: HeldRun) -> None:
        # The final state is recorded: the job may go, in parallel with the announcement.
        # Its ack is not confirmed: a lost one redelivers the job, which finds the run
        # final and is dropped.
        await asyncio.gather(self.records.announce(held.run),
                             quietly(held.delivery.ack(confirm=False)))

    async def _hand_back(self, held: HeldRun) -> None:
        held.finishing = True
        def back(run: FlowRun) -> FlowRun:
            if run.state.name == "Cancelling":
                return run.transition(State.named("Cancelled", message="cancelled while draining"))
            if run.state.name == "Paused":  # suspended instead: its resume starts it anywhere
                return pauses.handed_over(run)
            return claims.handed_back(run)

        await self.records.write(held, back, announce=True)
        if held.run.state.name == "Suspended":
            await quietly(held.delivery.ack())  # the resume publishes its next job
        else:
            await quietly(held.delivery.nak())


def make_executor(nats_settings: NatsSettings, settings: RunnerSettings,
                  flows: Mapping[str, Any] | None = None) -> Executor:
    if settings.isolation == "inline":
        from runners.inline import InlineExecutor

        return InlineExecutor(nats_settings, settings, flows)
    from runners.workers import WorkerPool

    return WorkerPool(nats_settings, settings)


async def serve(nats_settings: NatsSettings, settings: RunnerSettings, *,
                ready: asyncio.Event | None = None, stop: asyncio.Event,
                flows: Mapping[str, Any] | None = None,
                resolver: Resolver = resolve_entrypoint) -> None:
    """Connect and serve ``settings.pool`` until ``stop`` is set; then drain and return."""
    async with await Bus.connect(nats_settings, name=f"flowbus-runner-{settings.pool}") as bus:
        runner = Runner(bus, settings, make_executor(nats_settings, settings, flows),
                        resolver=resolver)
        await runner.run(stop, ready)
