"""``process`` isolation: a pool of warm worker processes, one attempt per worker.

Workers are started from a fork server that has already imported flowbus and the
worker code, so a replacement is a fork, not an interpreter start-up; each worker
keeps the flow modules it loaded, and the pool hands a run to a worker that
already has its module when one is idle. A crash, a memory blow-up or a timeout
kills only that worker, which is replaced; a worker is recycled after
``worker_max_runs`` attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from events.settings import NatsSettings
from runners.settings import RunnerSettings
from runners.types import Execution, FlowInfo, Outcome, RunSpec
from runners.worker import LEASE_EXIT, PARENT_POLL, worker_main

log = logging.getLogger("flowbus.runner.workers")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


SAFE_PATH_MARK = "_FLOWBUS_SET_PYTHONSAFEPATH"
_start_lock = threading.Lock()


def _context() -> BaseContext:
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # no fork server on this platform
        return multiprocessing.get_context("spawn")
    # Workers fork with flowbus, pydantic and nats-py already imported.
    ctx.set_forkserver_preload(["runners.worker", "flowbus._nats_sink"])
    _start_fork_server()
    return ctx


def _start_fork_server() -> None:
    """Start the fork server so that the working directory is not on its ``sys.path``.

    It is a ``python -c`` process, which would put the working directory first on
    ``sys.path``: a folder there named ``flowbus`` or ``runners`` (a project named
    after the tool, the parent of a checkout) would then shadow the installed
    packages and every run would fail to import. ``PYTHONSAFEPATH`` keeps it off;
    the workers drop that variable again (:func:`runners.worker.worker_main`), so the
    user's own subprocesses behave as usual.
    """
    from multiprocessing import forkserver

    with _start_lock:
        added = "PYTHONSAFEPATH" not in os.environ
        if added:
            os.environ["PYTHONSAFEPATH"] = "1"
            os.environ[SAFE_PATH_MARK] = "1"
        try:
            forkserver.ensure_running()
        finally:
            if added:
                os.environ.pop("PYTHONSAFEPATH", None)
                os.environ.pop(SAFE_PATH_MARK, None)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class Worker:
    """One worker process; its pipe is read by the event loop (no thread per worker)."""

    def __init__(self, ctx: BaseContext, args: tuple[Any, ...], lease_seconds: float,
                 poll: float) -> None:
        parent, child = ctx.Pipe()
        # The lease: the monotonic time of the runner's last successful heartbeat for
        # the attempt under way (CLOCK_MONOTONIC is shared by the processes of a host).
        self.lease: Any = ctx.Value("d", time.monotonic(), lock=False)
        self.process = ctx.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(child, *args, self.lease, lease_seconds, poll), daemon=True,
            name="flowbus-worker",
        )
        self.process.start()
        child.close()
        self.conn: Connection = parent
        self.runs = 0
        self.modules: set[tuple[str, str]] = set()
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=8)
        self.kill_reason: str | None = None
        self.ready = False  # said it is set up (connected), or gave up waiting for that
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start delivering the worker's messages to :attr:`inbox` (on the loop's thread)."""
        self._loop = loop
        loop.add_reader(self.conn.fileno(), self._readable)

    def detach(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                self._loop.remove_reader(self.conn.fileno())
            self._loop = None

    def _readable(self) -> None:
        # Messages are small and written whole, except a large result, which the
        # worker is writing as we read it: recv() then waits for the rest briefly.
        try:
            while self.conn.poll():
                self.inbox.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            self.detach()
            self.inbox.put_nowait(("exit", None))

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def kill(self, reason: str) -> None:
        self.kill_reason = self.kill_reason or reason
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def finish(self) -> None:
        """Reap the process and close the pipe (blocking briefly: call in a thread)."""
        self.process.join(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()


class WorkerExecution:
    """An attempt running in a worker."""

    def __init__(self, pool: WorkerPool, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        self.loaded: asyncio.Future[FlowInfo] = loop.create_future()
        self.finished: asyncio.Future[Outcome] = loop.create_future()
        self._pool = pool
        self._worker = worker
        self._task = asyncio.create_task(self._follow(), name="flowbus-worker-follow")

    async def _follow(self) -> None:
        worker = self._worker
        while True:
            kind, payload = await worker.inbox.get()
            if kind == "ready":  # a worker that was slow to start: it is set up now
                continue
            if kind == "loaded":
                if not self.loaded.done():
                    self.loaded.set_result(payload)
                continue
            if kind == "done":
                assert isinstance(payload, Outcome)
                self._pool.release(worker, recycle=payload.recycle)
                self._settle(payload)
                return
            # The process is gone: a crash, or the runner killed it.
            exit_code = await asyncio.to_thread(_exit_code, worker)
            reason = worker.kill_reason
            if reason is None and exit_code == LEASE_EXIT:
                reason = ("The worker stopped the attempt itself: it had not heard from its "
                          "runner for longer than its lease")
            self._pool.replace(worker)
            if reason == "stopped":
                self._settle(Outcome("stopped"))
            else:
                self._settle(Outcome(
                    "died", "Crashed",
                    reason or f"The worker process running the flow exited with code {exit_code}",
                ))
            return

    def _settle(self, outcome: Outcome) -> None:
        if not self.finished.done():
            self.finished.set_result(outcome)
        if not self.loaded.done():
            self.loaded.cancel()

    def go(self) -> None:
        try:
            self._worker.conn.send(("go", None))
        except (OSError, BrokenPipeError):
            self._worker.kill("died")

    def renew(self, since: float) -> None:
        self._worker.lease.value = max(self._worker.lease.value, since)

    async def stop(self) -> None:
        self._worker.kill("stopped")
        await asyncio.shield(self.finished)


def _exit_code(worker: Worker) -> int | None:
    worker.process.join(timeout=5)
    code: int | None = worker.process.exitcode
    return code


READY_WAIT = 30.0  # seconds a new worker may take to connect before runs queue on it anyway


class WorkerPool:
    """``limit`` warm workers; :meth:`execute` hands an attempt to an idle one."""

    def __init__(self, nats_settings: NatsSettings, settings: RunnerSettings) -> None:
        self._ctx = _context()
        self._nats = nats_settings
        self._settings = settings
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._available = asyncio.Semaphore(0)
        self._restarts = 0
        self._spawning: set[asyncio.Task[None]] = set()
        self._starting: set[Worker] = set()
        self._starting_closed: list[Worker] = []  # became ready after close began
        self._closed = False

    def _args(self) -> tuple[Any, ...]:
        return (self._nats.model_dump(), os.getpid(), self._settings.log_buffer)

    def _spawn(self) -> Worker:
        poll = min(PARENT_POLL, self._settings.heartbeat_interval / 2)
        return Worker(self._ctx, self._args(), self._settings.lease, poll)

    async def start(self) -> None:
        workers = await asyncio.gather(*(
            asyncio.to_thread(self._spawn) for _ in range(self._settings.limit)
        ))
        await asyncio.gather(*(self._add(worker) for worker in workers))

    async def _add(self, worker: Worker) -> None:
        """Make ``worker`` idle once it said it is set up (bounded by ``READY_WAIT``).

        A new worker connects to NATS before it serves; a run handed to it earlier
        would wait for that: the slow first run behind the body-start tail.
        """
        if self._closed:
            worker.kill("closed")
            return
        worker.attach(asyncio.get_running_loop())
        self._starting.add(worker)
        try:
            async with asyncio.timeout(READY_WAIT):
                kind, payload = await worker.inbox.get()
            if kind != "ready":  # it exited while starting: the next _take replaces it
                worker.inbox.put_nowait((kind, payload))
        except TimeoutError:
            pass  # slow to start: runs queue on its pipe, as they did before this wait
        finally:
            self._starting.discard(worker)
        worker.ready = True
        if self._closed:
            self._starting_closed.append(worker)
            return
        self._idle.append(worker)
        self._available.release()

    async def close(self) -> None:
        self._closed = True
        for worker in list(self._starting):
            worker.kill("closed")
        for task in list(self._spawning):
            await task
        workers = [*self._idle, *self._busy, *self._starting_closed]
        for worker in workers:
            worker.detach()
        for worker in self._idle:
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.conn.send(("stop", None))
        for worker in self._busy:
            worker.kill("closed")
        await asyncio.gather(*(asyncio.to_thread(_stop, w) for w in workers))
        self._idle.clear()
        self._busy.clear()

    def restarts(self) -> int:
        return self._restarts

    async def _take(self, key: tuple[str, str] | None = None) -> Worker:
        """An idle, live worker (one that has loaded ``key`` if there is one)."""
        while True:
            await self._available.acquire()
            worker = next((w for w in reversed(self._idle) if key in w.modules), self._idle[-1])
            self._idle.remove(worker)
            self._busy.add(worker)
            if worker.process.is_alive():
                return worker
            self.replace(worker)  # it died while idle: never hand it a run

    async def execute(self, spec: RunSpec) -> Execution:
        key = (spec.module, spec.attribute)
        worker = await self._take(key)
        worker.modules.add(key)
        worker.runs += 1
        worker.lease.value = time.monotonic()
        try:
            worker.conn.send(("run", spec))
        except (OSError, BrokenPipeError):
            worker.kill("died")
        return WorkerExecution(self, worker)

    async def run_cancellation_hooks(self, spec: RunSpec, message: str) -> None:
        worker = await self._take((spec.module, spec.attribute))
        try:
            worker.conn.send(("hooks", spec))
        except (OSError, BrokenPipeError):
            worker.kill("died")
        execution = WorkerExecution(self, worker)
        await execution.finished

    def release(self, worker: Worker, *, recycle: bool) -> None:
        if worker.runs >= self._settings.worker_max_runs or recycle:
            worker.kill("recycled")
            self._busy.discard(worker)
            self._respawn(worker)
            return
        self._busy.discard(worker)
        if self._closed:
            worker.kill("closed")
            return
        self._idle.append(worker)
        self._available.release()

    def replace(self, worker: Worker) -> None:
        """A worker that died or was killed mid-run (a restart; recycling is not one)."""
        self._busy.discard(worker)
        self._restarts += 1
        self._respawn(worker)

    def _respawn(self, old: Worker) -> None:
        old.detach()

        async def respawn() -> None:
            await asyncio.to_thread(old.finish)
            if self._closed:
                return
            await self._add(await asyncio.to_thread(self._spawn))

        task = asyncio.create_task(respawn(), name="flowbus-worker-respawn")
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    def check_memory(self) -> None:
        """Kill busy workers past ``worker_max_memory_mb`` (their run ends Crashed)."""
        limit_mb = self._settings.worker_max_memory_mb
        if limit_mb is None:
            return
        for worker in list(self._busy):
            rss = rss_bytes(worker.pid)
            if rss is not None and rss > limit_mb * 1024 * 1024:
                worker.kill(
                    f"The worker process used {rss // (1024 * 1024)} MiB, more than the "
                    f"runner's limit of {limit_mb} MiB (FLOWBUS_RUNNER_WORKER_MAX_MEMORY_MB); "
                    "it was killed"
                )


def _stop(worker: Worker) -> None:
    worker.process.join(timeout=2)
    if worker.process.is_alive():
        worker.kill("closed")
        worker.process.join(timeout=2)
    with contextlib.suppress(OSError):
        worker.conn.close()
