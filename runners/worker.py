"""The main loop of a warm worker process (the child side of :mod:`runners.workers`).

A worker imports flowbus once, keeps every flow module it loaded, and executes one
attempt at a time on request from its runner over a pipe. It publishes the engine's
events and logs itself, through its own NATS connection, and turns what user code
prints into log lines of the run. It exits when the runner asks, when the pipe
closes, or when the runner process is gone (so a killed runner leaves no worker
executing a run that another runner may take over).

It also fences itself: while it executes an attempt, its runner renews a lease in
shared memory after every successful heartbeat; a worker that has not been renewed
for ``lease`` seconds (its runner frozen, swapped out, or cut off from NATS) exits at
once, before anyone may take the run over (docs/runners.md, "Fencing"). The body
only starts once the runner said ``go`` (it recorded that the body starts), and the
outcome is stored by the worker itself before it reports back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from flowbus import _sink
from flowbus.logging import setup_logging
from runners.attempt import (
    cancellation_hooks,
    flow_info,
    load,
    load_failure,
    persist_outcome,
    run_sync,
)
from runners.sinks import RecordedRunsFilter, StreamToLogs, open_nats_sink
from runners.types import Outcome, RunSpec

PARENT_POLL = 0.2
LEASE_EXIT = 75
PERSIST_BOUND = 60.0


class Guard:
    """Exits the worker when its runner is gone or its lease ran out.

    ``phase``: ``idle`` (no attempt), ``running`` (loading or executing: the lease
    applies), ``persisting`` (storing the outcome: a compare-and-set write that a
    takeover refuses, so it may finish even after the runner died, within a bound).
    """

    def __init__(self, runner_pid: int, lease: Any, lease_seconds: float, poll: float) -> None:
        self.runner_pid = runner_pid
        self.lease = lease
        self.lease_seconds = lease_seconds
        self.poll = poll
        self.phase = "idle"
        self.since = time.monotonic()

    def enter(self, phase: str) -> None:
        self.phase, self.since = phase, time.monotonic()

    def start(self) -> None:
        threading.Thread(target=self._watch, name="flowbus-worker-guard", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.poll)
            now = time.monotonic()
            if self.phase == "persisting" and now - self.since < PERSIST_BOUND:
                continue
            if os.getppid() == 1 or not _alive(self.runner_pid):
                os._exit(70)
            if self.phase == "running" and now - self.lease.value > self.lease_seconds:
                print(f"flowbus worker {os.getpid()}: no heartbeat from runner "
                      f"{self.runner_pid} for {now - self.lease.value:.1f}s (lease "
                      f"{self.lease_seconds}s): stopping the attempt", file=sys.__stderr__)
                os._exit(LEASE_EXIT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _console_to_real_stderr() -> None:
    # Run logs already go to NATS; the console copy must not loop back through the
    # captured stderr and become a second log line.
    root = logging.getLogger("flowbus")
    for handler in list(root.handlers):
        if type(handler).__name__ == "_StderrHandler":
            real = logging.StreamHandler(sys.__stderr__)
            real.setFormatter(handler.formatter)
            root.removeHandler(handler)
            root.addHandler(real)


def _install_sink(settings_dump: dict[str, Any], buffer: int) -> RecordedRunsFilter | None:
    from events.errors import FlowbusError
    from events.settings import NatsSettings
    from flowbus import _remote

    settings = NatsSettings(**settings_dump)
    try:
        # Results, caches, variables, artifacts and blocks of the runs: the server's buckets.
        _remote.install(settings)
    except FlowbusError as exc:
        print(f"flowbus worker: run-time state unreachable: {exc}", file=sys.__stderr__)
    try:
        sink = open_nats_sink(settings, buffer)
    except FlowbusError as exc:
        print(f"flowbus worker: run events and logs stay local: {exc}", file=sys.__stderr__)
        return None
    _sink.set_event_sink(sink)
    return sink


def worker_main(conn: Connection, settings_dump: dict[str, Any], runner_pid: int,
                log_buffer: int, lease: Any, lease_seconds: float, poll: float) -> None:
    """Serve run requests from ``conn`` until told to stop, orphaned or fenced.

    ``poll``: how often the lease is checked (shorter than the runner's heartbeat).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.environ.pop("_FLOWBUS_SET_PYTHONSAFEPATH", None):  # see runners.workers
        os.environ.pop("PYTHONSAFEPATH", None)
    guard = Guard(runner_pid, lease, lease_seconds, poll)
    guard.start()
    sink = _install_sink(settings_dump, log_buffer)
    setup_logging()
    _console_to_real_stderr()
    current: list[str | None] = [None]
    sys.stdout = StreamToLogs("flowbus.worker.stdout", logging.INFO, lambda: current[0], sys.__stdout__)
    sys.stderr = StreamToLogs("flowbus.worker.stderr", logging.WARNING, lambda: current[0], sys.__stderr__)
    flows: dict[tuple[str, str, str], Any] = {}
    # Connected and set up: the pool hands this worker no run before it hears this, so
    # no run waits for a new worker's NATS connections (runners.workers).
    try:
        conn.send(("ready", None))
    except (OSError, BrokenPipeError):
        return
    while True:
        try:
            kind, spec = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "stop":
            return
        assert isinstance(spec, RunSpec)
        current[0] = spec.flow_run_id
        if sink is not None:
            sink.own(spec.flow_run_id)
        shipped = sink.published_count if sink else 0
        dropped = sink.error_count if sink else 0
        try:
            guard.enter("running" if kind == "run" else "idle")
            outcome = _serve_one(conn, kind, spec, flows, guard, sink)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            if sink is not None:
                sink.flush()
                sink.release(spec.flow_run_id)
            current[0] = None
        if sink is not None:
            outcome = dataclasses.replace(outcome, logs_shipped=sink.published_count - shipped,
                                          logs_dropped=sink.error_count - dropped)
        try:
            conn.send(("done", outcome))
        except (OSError, BrokenPipeError):
            return  # the runner is gone; the outcome, if any, is stored
        guard.enter("idle")


def _serve_one(conn: Connection, kind: str, spec: RunSpec, flows: dict[tuple[str, str, str], Any],
               guard: Guard, sink: RecordedRunsFilter | None) -> Outcome:
    key = (spec.code_root, spec.module, spec.attribute)
    try:
        flow = flows.get(key) or load(spec)
    except (Exception, SystemExit) as exc:
        return _persisted(spec, load_failure(spec, exc), guard, sink)
    flows[key] = flow
    if kind == "hooks":
        cancellation_hooks(flow, spec, "The run was cancelled.")
        return Outcome("final", "Cancelled")
    conn.send(("loaded", flow_info(flow)))
    try:
        go, _ = conn.recv()  # the runner records that the body starts, then says go
    except (EOFError, OSError):
        return Outcome("stopped")
    if go != "go":
        return Outcome("stopped")
    return _persisted(spec, run_sync(flow, spec), guard, sink)


def _persisted(spec: RunSpec, outcome: Outcome, guard: Guard,
               sink: RecordedRunsFilter | None) -> Outcome:
    """The outcome stored by this worker (the runner stores it when there is no NATS here)."""
    publisher = sink.publisher if sink is not None else None
    if publisher is None:
        return outcome
    guard.enter("persisting")
    try:
        recorded: Outcome = publisher.run(persist_outcome(publisher.bus, spec, outcome))
        return recorded
    except Exception as exc:  # NATS trouble: the runner stores it instead
        print(f"flowbus worker: could not store the outcome of {spec.flow_run_id}: {exc!r}",
              file=sys.__stderr__)
        return outcome
