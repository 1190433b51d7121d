"""The main loop of a warm worker process (the child side of :mod:`runners.workers`).

A worker imports flowbus once, keeps every flow module it loaded, and executes one
attempt at a time on request from its runner over a pipe. It publishes the engine's
events and logs itself, through its own NATS connection, and turns what user code
prints into log lines of the run. It exits when the runner asks, when the pipe
closes, or when the runner process is gone (so a killed runner leaves no worker
executing a run that another runner may take over).
"""

from __future__ import annotations

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
from runners.attempt import cancellation_hooks, flow_info, load, load_failure, run_sync
from runners.sinks import RecordedRunsFilter, StreamToLogs, open_nats_sink
from runners.types import Outcome, RunSpec

PARENT_POLL = 0.2


def _exit_with_parent(runner_pid: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL)
            if os.getppid() == 1 or not _alive(runner_pid):
                os._exit(70)

    threading.Thread(target=watch, name="flowbus-parent-watch", daemon=True).start()


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

    try:
        sink = open_nats_sink(NatsSettings(**settings_dump), buffer)
    except FlowbusError as exc:
        print(f"flowbus worker: run events and logs stay local: {exc}", file=sys.__stderr__)
        return None
    _sink.set_event_sink(sink)
    return sink


def worker_main(conn: Connection, settings_dump: dict[str, Any], runner_pid: int,
                log_buffer: int) -> None:
    """Serve run requests from ``conn`` until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.environ.pop("_FLOWBUS_SET_PYTHONSAFEPATH", None):  # see runners.workers
        os.environ.pop("PYTHONSAFEPATH", None)
    _exit_with_parent(runner_pid)
    sink = _install_sink(settings_dump, log_buffer)
    setup_logging()
    _console_to_real_stderr()
    current: list[str | None] = [None]
    sys.stdout = StreamToLogs("flowbus.worker.stdout", "INFO", lambda: current[0], sys.__stdout__)
    sys.stderr = StreamToLogs("flowbus.worker.stderr", "WARNING", lambda: current[0], sys.__stderr__)
    flows: dict[tuple[str, str], Any] = {}
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
            outcome = _serve_one(conn, kind, spec, flows)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            if sink is not None:
                sink.flush()
                sink.release(spec.flow_run_id)
            current[0] = None
        if sink is not None:
            outcome = Outcome(
                outcome.kind, outcome.state_name, outcome.message, outcome.result,
                outcome.recycle, sink.published_count - shipped, sink.error_count - dropped,
            )
        conn.send(("done", outcome))


def _serve_one(conn: Connection, kind: str, spec: RunSpec,
               flows: dict[tuple[str, str], Any]) -> Outcome:
    key = (spec.module, spec.attribute)
    try:
        flow = flows.get(key) or load(spec)
    except (Exception, SystemExit) as exc:
        return load_failure(spec, exc)
    flows[key] = flow
    if kind == "hooks":
        cancellation_hooks(flow, spec, "The run was cancelled.")
        return Outcome("final", "Cancelled")
    conn.send(("loaded", flow_info(flow)))
    return run_sync(flow, spec)
