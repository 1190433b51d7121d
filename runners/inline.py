"""``inline`` isolation: attempts run in the runner's own process, for the lowest latency.

An async flow runs as a task on the runner's event loop; a sync flow in a daemon
thread of its own. Nothing separates a run from the runner: a crash takes the
runner down, and code that ignores its timeout or a cancellation cannot be
stopped (its record is still finished at the deadline; the thread is abandoned).
``flow.serve()`` uses this executor with the flows it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

from events.settings import NatsSettings
from flowbus import _sink
from runners.attempt import cancellation_hooks, flow_info, load, load_failure, run_async, run_sync
from runners.settings import RunnerSettings
from runners.sinks import RecordedRunsFilter, open_nats_sink
from runners.types import Execution, FlowInfo, Outcome, RunSpec


class DaemonThreads:
    """Reused daemon threads for sync flows; a new one only when all are busy.

    Daemon threads, because a run abandoned at its timeout or cancellation may never
    return, and must not keep the process alive at exit.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue())
        self._idle = 0
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._idle == 0:
                thread = threading.Thread(target=self._work, daemon=True, name="flowbus-inline-run")
                self.threads = [t for t in self.threads if t.is_alive()] + [thread]
                thread.start()
            else:
                self._idle -= 1
        self._jobs.put((fn, args))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            fn(*args)
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Let every thread end: idle ones at once, busy ones after their run.

        (A run that never returns keeps its thread; it is a daemon.)
        """
        with self._lock:
            for _ in self.threads:
                self._jobs.put(None)


class InlineExecution:
    def __init__(self, executor: InlineExecutor, spec: RunSpec) -> None:
        loop = asyncio.get_running_loop()
        self.loaded: asyncio.Future[FlowInfo] = loop.create_future()
        self.finished: asyncio.Future[Outcome] = loop.create_future()
        self._executor = executor
        self._spec = spec
        self._task: asyncio.Task[None] | None = None
        self._flow: Any = None
        self._loop = loop

    def begin(self) -> None:
        spec = self._spec
        self._executor.own(spec.flow_run_id)
        try:
            flow = self._executor.flow_for(spec)
        except (Exception, SystemExit) as exc:
            self._settle(load_failure(spec, exc))
            return
        self._flow = flow
        self.loaded.set_result(flow_info(flow))

    def go(self) -> None:
        flow = self._flow
        if flow is None or self.finished.done():
            return
        if flow.isasync:
            self._task = asyncio.create_task(self._run_async(flow), name="flowbus-inline-run")
        else:
            self._executor.threads.submit(self._run_sync, flow)

    def renew(self, since: float) -> None:
        """Nothing to fence: the run lives and dies with the runner (docs/runners.md)."""

    async def _run_async(self, flow: Any) -> None:
        self._settle(await run_async(flow, self._spec))

    def _run_sync(self, flow: Any) -> None:
        outcome = run_sync(flow, self._spec)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._settle, outcome)

    def _settle(self, outcome: Outcome) -> None:
        self._executor.release(self._spec.flow_run_id)
        if not self.finished.done():
            self.finished.set_result(outcome)
        if not self.loaded.done():
            self.loaded.cancel()

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves, not just the run
        self._settle(Outcome("stopped"))


class InlineExecutor:
    """Executes attempts in this process; ``flows`` maps deployment names to flow objects."""

    def __init__(self, nats_settings: NatsSettings, settings: RunnerSettings,
                 flows: Mapping[str, Any] | None = None) -> None:
        self._nats = nats_settings
        self._settings = settings
        self._flows = dict(flows or {})
        self._filter: RecordedRunsFilter | None = None
        self._previous: Any = None
        self.threads = DaemonThreads()

    async def start(self) -> None:
        from flowbus import _remote

        # Results, caches, variables, artifacts and blocks of the runs: the server's buckets.
        await asyncio.to_thread(_remote.install, self._nats)
        self._filter = await asyncio.to_thread(open_nats_sink, self._nats, self._settings.log_buffer)
        self._previous = _sink.set_event_sink(self._filter)

    async def close(self) -> None:
        from flowbus import _remote

        await asyncio.to_thread(_remote.reset)
        self.threads.close()
        if self._filter is not None:
            if _sink.get_event_sink() is self._filter:
                _sink.set_event_sink(self._previous)
            await asyncio.to_thread(self._filter.close)
            self._filter = None

    def restarts(self) -> int:
        return 0

    def own(self, flow_run_id: str) -> None:
        if self._filter is not None:
            self._filter.own(flow_run_id)

    def release(self, flow_run_id: str) -> None:
        if self._filter is not None:
            self._filter.release(flow_run_id)

    def flow_for(self, spec: RunSpec) -> Any:
        if spec.deployment_name in self._flows:
            return self._flows[spec.deployment_name]
        return load(spec)

    async def execute(self, spec: RunSpec) -> Execution:
        execution = InlineExecution(self, spec)
        execution.begin()
        return execution

    async def run_cancellation_hooks(self, spec: RunSpec, message: str) -> None:
        try:
            flow = self.flow_for(spec)
        except (Exception, SystemExit):
            return  # its load failure was already reported by the attempt
        if flow.on_cancellation:
            await asyncio.to_thread(cancellation_hooks, flow, spec, message)

    def check_memory(self) -> None:
        """Nothing to check: a run shares the runner's memory."""
