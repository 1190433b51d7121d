"""Durable task reuse: completed task runs of a flow run are not run again in a later
attempt of the same run (after a crash retry, or when a suspended run resumes).

Each task run of a run a runner executes has a deterministic identity, Prefect's:
the flow-run id, the task's key and its dynamic key (how many runs of that task the
flow run had started before it: ``"0"``, ``"1"``, ...). When such a task run
completes, its result is written to the task cache store (the server's
``<ns>-cache`` bucket, 30 days) under ``durable/<flow-run-id>/<task-key>/<dynamic-key>``
(the task key: its qualified name and a digest of its bytecode).
From the record's second attempt on, a task run whose identity has a stored result
ends Completed with it at once, its body not run. A body that calls its tasks in the
same order gets each result back; tasks of subflows run again.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flowbus.context import FlowRunContext, TaskRun, _flow_run_ctx
from flowbus.states import State

_log = logging.getLogger("flowbus.durable")
REUSED_MESSAGE = "Reused the result of an earlier attempt of this flow run"


def stable_task_key(task: Any) -> str:
    """The task's identity across processes and code locations: its qualified name and
    a digest of its body's bytecode (the module name of a bundle depends on where it
    was unpacked, so ``task.task_key`` cannot serve)."""
    fn = task.fn
    code = getattr(fn, "__code__", None)
    digest = hashlib.blake2b(code.co_code if code is not None else b"", digest_size=8).hexdigest()
    return f"{getattr(fn, '__qualname__', task.name)}-{digest}"


def next_dynamic_key(flow_ctx: FlowRunContext | None, task: Any) -> str | None:
    """The dynamic key of a new run of ``task`` in the current flow run (``"0"``, ``"1"``...)."""
    if flow_ctx is None:
        return None
    key = stable_task_key(task)
    count = flow_ctx.dynamic_keys.get(key, 0)
    flow_ctx.dynamic_keys[key] = count + 1
    return f"{key}/{count}"


def _record_key(task_run: TaskRun) -> str:
    return f"durable/{task_run.flow_run_id}/{task_run.dynamic_key}"


def _applies(flow_ctx: FlowRunContext | None, task_run: TaskRun) -> bool:
    if flow_ctx is None or flow_ctx.flow_run.record_attempt <= 0 or task_run.dynamic_key is None:
        return False
    if task_run.flow_run_id != flow_ctx.flow_run.id:
        return False
    from flowbus.results import server_connection

    try:
        return server_connection() is not None
    except Exception:  # no reachable server: nothing durable to read or write
        return False


def reused(task_run: TaskRun) -> tuple[bool, Any]:
    """``(True, value)`` when an earlier attempt of the flow run completed this task run."""
    flow_ctx = _flow_run_ctx.get()
    if flow_ctx is None or flow_ctx.flow_run.record_attempt <= 1 or not _applies(flow_ctx, task_run):
        return False, None
    from flowbus._run_support import cache_lookup

    try:
        return cache_lookup(_record_key(task_run))
    except Exception as exc:  # unreadable: run the body again
        _log.warning("Ignoring the unreadable result of an earlier attempt: %s", exc)
        return False, None


def reused_state(task_run: TaskRun) -> State[Any] | None:
    """The Completed state of a task run an earlier attempt completed, else None."""
    done, value = reused(task_run)
    if not done:
        return None
    from flowbus.states import Completed

    task_run.returned = (value,)
    return Completed(data=value, message=REUSED_MESSAGE)


def remember(task: Any, task_run: TaskRun, value: Any) -> None:
    """Store a completed task run's result for later attempts of its flow run."""
    if not _applies(_flow_run_ctx.get(), task_run):
        return
    from flowbus.results import encode_cache_record
    from flowbus.serializers import resolve_serializer

    for serializer in (task._serializer, resolve_serializer("cloudpickle")):
        try:
            payload = serializer.dumps(value)
        except Exception:
            continue
        try:
            _write(_record_key(task_run), encode_cache_record(serializer, payload, None))
        except Exception as exc:  # the run goes on; a later attempt runs the task again
            _log.warning("Could not store the result of task run %s for reuse: %s", task_run.name, exc)
        return
    _log.warning("The result of task run %s cannot be serialized; a later attempt runs it again",
                 task_run.name)


# A record is stored (acknowledged) before the task call returns to its flow: a task
# whose call returned is never run again by a later attempt of its flow run. A SIGKILL
# between the task's end and that acknowledgement runs the task again.
WRITE_SECONDS = 30.0


def _write(key: str, record: bytes) -> None:
    from flowbus.results import default_cache_store

    store = default_cache_store()
    write_soon = getattr(store, "write_soon", None)
    if write_soon is None:
        store.write(key, record)
        return
    future = write_soon(key, record)
    if future is not None:
        try:
            future.result(WRITE_SECONDS)
        except Exception as exc:  # a later attempt runs that task again
            _log.warning("A task result was not stored for reuse: %r", exc)


def flush() -> None:
    """Nothing to wait for: each record is stored before its task call returns (kept for
    the flow engine, which calls it before recording the attempt's outcome)."""
