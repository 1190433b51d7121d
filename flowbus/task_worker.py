"""Task workers: processes that execute background task runs (`Task.delay`).

``flowbus task-worker my_tasks:add my_tasks:resize --limit 10`` or, in Python::

    from flowbus.task_worker import serve
    from my_tasks import add, resize

    serve(add, resize, limit=10)

Every worker serving a task shares one durable consumer of its jobs, so several
workers split the work. A worker claims a run by compare-and-set on its record and
keeps a lease on it (the record's ``updated`` time and the job's ack deadline,
refreshed every ``heartbeat_interval``); a worker that dies mid-run leaves the job
un-acknowledged, JetStream hands it to another worker once the lease has run out,
and that worker runs it again (see `events.background` for the rules). Retries,
timeouts, caching and result persistence are the task's own, as for any call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from events import background as contract
from events.background import TaskWorkerSettings
from events.bus import Bus
from events.errors import FlowbusError, UpdateConflict
from events.kv import KV
from events.kv_window import KVWindow
from events.records import utcnow
from events.settings import NatsSettings
from flowbus._body_thread import BodyThread
from flowbus._drivers import drive_sync
from flowbus._loop_sink import loop_sink
from flowbus._task_engine import task_run_steps
from flowbus.background import UPSTREAM_MARKER, TaskRunFuture
from flowbus.context import TaskRun
from flowbus.exceptions import ConfigurationError
from flowbus.results import resolve_result_store
from flowbus.states import Pending, State, StateType
from flowbus.tasks import Task

log = logging.getLogger("flowbus.task_worker")

# How long a cancelled body gets to stop before it is abandoned.
CANCEL_GRACE_SECONDS = 5.0
# How an execution ended: state name, message, the result (its key in the result store,
# or its encoded bytes when the record carries it), the error of a failed run.
Outcome = tuple[str, str | None, str | bytes | None, contract.TaskRunError | None]


def _worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Lease:
    """The revision this worker last wrote to a record it holds; lost on a conflict."""

    __slots__ = ("body", "cancelled", "lost", "record", "revision")

    def __init__(self, record: contract.TaskRunRecord, revision: int) -> None:
        self.record, self.revision, self.lost = record, revision, False
        self.cancelled = False  # the run was cancelled (the record moved to Cancelled)
        self.body: BodyThread[Outcome] | None = None

    async def write(self, kv: KVWindow, record: contract.TaskRunRecord) -> bool:
        if self.lost:
            return False
        try:
            self.revision = await kv.cas(record.id, record.encode(), self.revision)
        except UpdateConflict:
            self.lost = True
            return False
        self.record = record
        return True


class TaskWorker:
    """Executes the runs of ``tasks`` (keyed by task key) from the bus, ``limit`` at once."""

    def __init__(self, bus: Bus, kv: KV, tasks: list[Task[Any, Any]],
                 settings: TaskWorkerSettings) -> None:
        self.bus, self.kv, self.settings = bus, kv, settings
        self.tasks = {t.task_key: t for t in tasks}
        # Claims and lease writes of runs handled at the same moment go out together.
        self.records: KVWindow | None = None
        self.worker_id = _worker_id()
        self._free = settings.limit
        self._running: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.started_at = utcnow()
        self.finished: dict[str, int] = {}  # task key -> runs this worker ended
        self.in_flight: dict[str, dict[str, datetime]] = {}  # task key -> run id -> start

    @property
    def unfinished(self) -> int:
        """Task runs being handled now."""
        return len(self._running)

    @property
    def heartbeat_interval(self) -> float:
        return self.settings.lease_seconds / 5

    async def run(self) -> None:
        """Serve until :attr:`stop` is set, then drain (bounded by ``drain_timeout``)."""
        layout = self.bus.layout
        self.records = await KVWindow.open(self.bus, layout.task_runs)
        consumers = [
            (task, await self.bus.consumer(
                contract.consumer_name(key), stream=layout.tasks_stream,
                filter_subjects=[contract.task_subject(layout.namespace, key)],
                ack_wait=self.settings.lease_seconds, max_ack_pending=100_000))
            for key, task in self.tasks.items()
        ]
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as group:
                for task, consumer in consumers:
                    group.create_task(self._pull(task, consumer))
        finally:
            for _, consumer in consumers:
                await consumer.close()
            if self._running:
                await asyncio.wait(self._running, timeout=self.settings.drain_timeout)
            await self._records().close()

    async def _pull(self, task: Task[Any, Any], consumer: Any) -> None:
        # Each served task fetches at most its share of the slots at a time, so one
        # task's queue never starves another's.
        share = max(1, self.settings.limit // len(self.tasks))
        wait = 0.5 if len(self.tasks) == 1 else 0.1
        while not self.stop.is_set():
            n = min(self._free, share)
            if n <= 0:
                self._freed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._freed.wait()
                continue
            self._free -= n  # reserved before the await: two tasks' loops never both take it
            try:
                deliveries = await consumer.fetch(n, max_wait=wait)
            except FlowbusError as exc:
                log.warning("fetching jobs of %s failed: %s", task.task_key, exc)
                deliveries = []
                await asyncio.sleep(0.5)
            finally:
                self._free += n
            if not deliveries and len(self.tasks) > 1:
                # Give the slots to the other tasks' loops before taking them again: with
                # fewer slots than tasks, one loop would otherwise hold them for good.
                self._freed.set()
                await asyncio.sleep(0)
            for delivery in deliveries:
                self._free -= 1
                job = asyncio.create_task(self._handle(task, delivery))
                self._running.add(job)
                job.add_done_callback(self._done)

    def _done(self, job: asyncio.Task[None]) -> None:
        self._running.discard(job)
        self._free += 1
        self._freed.set()
        if not job.cancelled() and job.exception() is not None:
            log.error("handling a task job failed", exc_info=job.exception())

    async def _handle(self, task: Task[Any, Any], delivery: Any) -> None:
        try:
            job = contract.TaskJob.model_validate_json(delivery.data)
        except ValidationError as exc:
            log.error("dropping a malformed task job: %s", exc.errors()[0]["msg"])
            await delivery.term()
            return
        if job.task_key != task.task_key:
            log.error("dropping job %s: it is for task %r, not %r", job.task_run_id, job.task_key,
                      task.task_key)
            await delivery.term()
            return
        lease = await self._claim(job, delivery)
        if lease is None:
            return
        if lease.record.state.name == "Crashed":
            await delivery.ack()
            return
        # The heartbeat task starts at the first beat: a run that ends sooner (most)
        # costs a timer, not a task.
        beats: list[asyncio.Task[None]] = []
        first_beat = asyncio.get_running_loop().call_later(
            self.heartbeat_interval, lambda: beats.append(
                asyncio.create_task(self._heartbeat(lease, delivery))))
        flight = self.in_flight.setdefault(task.task_key, {})
        flight[job.task_run_id] = utcnow()
        try:
            name, message, result, error = await self._execute(task, job, lease)
        finally:
            first_beat.cancel()
            for beat in beats:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
            flight.pop(job.task_run_id, None)
            self.finished[task.task_key] = self.finished.get(task.task_key, 0) + 1
        serializer = getattr(task._serializer, "name", "custom")
        final = contract.finished(
            lease.record, name, message, error=error,
            result_key=result if isinstance(result, str) else None,
            result_value=result if isinstance(result, bytes) else None,
            result_serializer=serializer if result is not None else None)
        if lease.cancelled:
            log.info("task run %s was cancelled; its body was stopped", job.task_run_id)
            if lease.body is None:  # cancelled before its body ran: no engine announced it
                await self._announce_cancel(job.task_run_id)
            await delivery.ack(confirm=False)
        elif await lease.write(self._records(), final):
            # Unconfirmed: a lost ack only redelivers a job whose record is final (dropped).
            await delivery.ack(confirm=False)
        else:
            log.warning("task run %s was taken over by another worker; its outcome here is "
                        "dropped", job.task_run_id)

    def _records(self) -> KVWindow:
        if self.records is None:
            raise RuntimeError("the task worker is not running")
        return self.records

    async def _announce_cancel(self, task_run_id: str) -> None:
        entry = await self.kv.get(task_run_id, latest=True)
        if entry is None:
            return
        record = contract.TaskRunRecord.decode(entry.value)
        if record.state.name == "Cancelled":
            try:
                await self.bus.publish(contract.cancelled_event(record))
            except FlowbusError as exc:
                log.warning("announcing the cancel of task run %s failed: %s", task_run_id, exc)

    async def _claim(self, job: contract.TaskJob, delivery: Any) -> _Lease | None:
        for _ in range(5):
            entry = await self._records().get(job.task_run_id)
            if entry is None:  # a lagging replica may not have it yet: ask the leader
                entry = await self.kv.get(job.task_run_id, latest=True)
            if entry is None:
                if delivery.num_delivered < contract.MISSING_RECORD_DELIVERIES:
                    await delivery.nak(delay=0.05)  # published together: not stored yet
                    return None
                log.error("dropping job %s: no such task run (expired?)", job.task_run_id)
                await delivery.term()
                return None
            record = contract.TaskRunRecord.decode(entry.value)
            decision = contract.decide(record, now=utcnow(), lease=self.settings.lease_seconds)
            if decision.action == "drop":
                await delivery.ack()
                return None
            if decision.action == "later":
                await delivery.nak(delay=max(decision.delay, 0.1))
                return None
            lease = _Lease(record, entry.revision)
            if await lease.write(self._records(), contract.claimed(record, self.worker_id, decision)):
                if decision.action == "take-over":
                    log.warning("task run %s: %s; running it again", job.task_run_id,
                                decision.reason)
                return lease
        await delivery.nak(delay=1.0)
        return None

    async def _heartbeat(self, lease: _Lease, delivery: Any) -> None:
        """Refresh the lease now and every ``heartbeat_interval`` until it is lost."""
        while True:
            try:
                await delivery.in_progress()
                refreshed = lease.record.model_copy(update={"updated": utcnow()})
                await lease.write(self._records(), refreshed)
            except FlowbusError as exc:  # NATS away for a moment: the next beat tries again
                log.warning("refreshing the lease of %s failed: %s", lease.record.id, exc)
            if lease.lost:
                break
            await asyncio.sleep(self.heartbeat_interval)
        # The record changed under us: cancelled, or taken over by another worker.
        entry = await self.kv.get(lease.record.id)
        if entry is not None and contract.TaskRunRecord.decode(entry.value).state.name == "Cancelled":
            lease.cancelled = True
            if lease.body is not None and lease.body.interrupt():
                log.info("task run %s was cancelled; stopping its body", lease.record.id)

    async def _execute(self, task: Task[Any, Any], job: contract.TaskJob,
                       lease: _Lease) -> Outcome:
        """Run the body once (with the task's own retries): final state name, message,
        result key, error."""
        record = lease.record
        for upstream in record.wait_for:
            state = await self._wait_final(upstream, lease)
            if state is not None:
                return "Failed", state, None, None
        if lease.lost:  # cancelled or taken over while waiting: the body never runs
            entry = await self.kv.get(record.id, latest=True)
            if entry is not None and \
                    contract.TaskRunRecord.decode(entry.value).state.name == "Cancelled":
                lease.cancelled = True
            return "Cancelled", contract.CANCELLED_MESSAGE, None, None
        body = lease.body = BodyThread(_run_body, task, job, record).start()
        try:
            return await body.result(grace=CANCEL_GRACE_SECONDS)
        except TimeoutError:  # stuck in C code: abandoned, its outcome discarded
            log.warning("task run %s: its body did not stop within %.0f s of the cancel; "
                        "left running in the background", record.id, CANCEL_GRACE_SECONDS)
        except Exception:
            if not body.interrupted:
                raise
        return "Cancelled", contract.CANCELLED_MESSAGE, None, None

    async def _wait_final(self, task_run_id: str, lease: _Lease) -> str | None:
        """Wait until upstream run ``task_run_id`` is final; None if it Completed, else why
        not (or until this run's lease is lost: cancelled or taken over)."""
        pause = 0.01
        while not lease.lost:
            entry = await self.kv.get(task_run_id, latest=True)
            if entry is None:
                return f"upstream task run {task_run_id} does not exist"
            upstream = contract.TaskRunRecord.decode(entry.value)
            if upstream.state.is_final():
                if upstream.state.type.value == "COMPLETED":
                    return None
                return f"upstream task run {task_run_id} ended {upstream.state.name}"
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
        return None


def _run_body(task: Task[Any, Any], job: contract.TaskJob,
              record: contract.TaskRunRecord) -> Outcome:
    """In a worker thread: decode the parameters, run the task engine, store the result."""
    try:
        raw = task._serializer.loads(job.parameters)
        if not isinstance(raw, dict):
            raise TypeError(f"parameters decode to a {type(raw).__name__}, not a mapping")
        parameters = {k: _resolve_upstream(v) for k, v in raw.items()}
        task._shape.bind((), dict(parameters))  # names that do not fit fail here
    except Exception as exc:
        return "Failed", f"The parameters of {task.name!r} do not fit: {exc}", None, None
    task_run = TaskRun(id=record.id, name=record.name, task_name=task.name, task_key=task.task_key,
                       parameters=parameters, tags=tuple(record.tags), state=Pending(),
                       flow_run_id=None)
    state: State[Any] = drive_sync(task_run_steps(task, task_run, parameters, None, {}))
    if state.type is not StateType.COMPLETED:
        name = state.name if state.name in contract.TASK_RUN_STATES else "Failed"
        error = (contract.describe_error(state.data)
                 if name == "Failed" and isinstance(state.data, BaseException) else None)
        return name, state.message, None, error
    try:
        payload = task._serializer.dumps(state.result(_sync=True))
        if task.result_storage is None and len(payload) <= contract.INLINE_RESULT_BYTES:
            return state.name, state.message, bytes(payload), None  # the record carries it
        resolve_result_store(task.result_storage).write(record.id, payload)
    except Exception as exc:  # unserializable, or the store refused it: the run fails
        return "Failed", f"The result could not be stored: {exc}", None, None
    return state.name, state.message, record.id, None


def _resolve_upstream(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {UPSTREAM_MARKER}:
        return TaskRunFuture(str(value[UPSTREAM_MARKER])).result(timeout=60)
    return value


def _check_options(tasks: tuple[Any, ...], timeout: float | None,
                   status_server_port: int | None) -> None:
    for item in tasks:
        if not isinstance(item, Task):
            raise ConfigurationError(f"serve() takes @task objects, got {item!r}")
    if not tasks:
        raise ConfigurationError("serve() needs at least one @task to serve")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 <= timeout < float("inf")):
        raise ConfigurationError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    if status_server_port is not None and (
            isinstance(status_server_port, bool) or not isinstance(status_server_port, int)
            or not 0 <= status_server_port <= 65535):
        raise ConfigurationError(
            f"status_server_port must be a port number 0-65535, got {status_server_port!r}")


async def aserve(*tasks: Task[Any, Any], limit: int | None = None,
                 status_server_port: int | None = None,
                 timeout: float | None = None,  # noqa: ASYNC109 (Prefect's signature: serving time)
                 settings: TaskWorkerSettings | None = None,
                 nats: NatsSettings | None = None) -> None:
    """Serve ``tasks`` until SIGTERM/SIGINT or ``timeout`` (the async form of :func:`serve`)."""
    _check_options(tasks, timeout, status_server_port)
    settings = settings or TaskWorkerSettings()
    if limit is not None:
        settings = settings.model_copy(update={"limit": limit})
    nats = nats or NatsSettings()
    from flowbus import _remote, _sink

    _remote.install(nats)  # results and caches go to the server's stores
    os.environ.setdefault("FLOWBUS_NATS_URL", nats.nats_url[0])
    from flowbus.logging import setup_logging

    setup_logging()  # run loggers print and reach the sink (the logs stream), as in a flow
    # Runs' events and log lines go out on this connection, from this loop (unless the
    # process chose its sink before).
    async with await Bus.connect(nats, name="flowbus-task-worker") as bus, \
            loop_sink(bus) as own_sink:
        kv = await bus.kv(bus.layout.task_runs)
        worker = TaskWorker(bus, kv, list(tasks), settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, worker.stop.set)
        status = None
        if status_server_port is not None:
            from flowbus._task_worker_status import HOST, start_status_server

            status, bound = await start_status_server(worker, status_server_port)
            print(f"task worker status server on http://{HOST}:{bound}", flush=True)
        runner = asyncio.create_task(worker.run())
        try:
            await worker.ready.wait()
            print(f"task worker {worker.worker_id} serving "
                  + ", ".join(sorted(worker.tasks)), flush=True)
            try:
                async with asyncio.timeout(timeout):
                    await worker.stop.wait()
            except TimeoutError:
                print(f"Task worker timed out after {timeout} seconds. Exiting...", flush=True)
                worker.stop.set()
            await runner
        finally:
            if status is not None:
                await status.cleanup()
        if own_sink is not None:
            await own_sink.aflush()
        else:
            _sink.flush_event_sink()
        if worker.unfinished:
            # A body still running after the drain timeout cannot be stopped from here;
            # its run is taken over by another worker once its lease runs out.
            log.warning("%d task run(s) still running after the drain timeout; exiting",
                        worker.unfinished)
            logging.shutdown()
            os._exit(1)


def serve(*tasks: Task[Any, Any], limit: int | None = None,
          status_server_port: int | None = None, timeout: float | None = None) -> Any:
    """Execute background runs of ``tasks`` in this process until SIGTERM/SIGINT.

    ``timeout``: stop after that many seconds (as on SIGTERM: no new runs, the running
    ones get the drain timeout), then return. ``status_server_port``: serve
    ``GET /status`` and ``GET /health`` on 127.0.0.1 at that port (0: any free port,
    printed). Called inside a running event loop it returns the coroutine to await.
    """
    coro = aserve(*tasks, limit=limit, status_server_port=status_server_port, timeout=timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    return coro


def load_task(entrypoint: str, root: Path | None = None) -> Task[Any, Any]:
    """The ``@task`` an entrypoint (``module:name`` or ``path/file.py:name``) names."""
    from flowbus.entrypoints import load_flow_object

    obj = load_flow_object(entrypoint, root or Path.cwd())
    if not isinstance(obj, Task):
        raise ConfigurationError(
            f"entrypoint {entrypoint!r} names a {type(obj).__name__}, not a @task")
    return obj


__all__ = ["TaskWorker", "TaskWorkerSettings", "aserve", "load_task", "serve"]
