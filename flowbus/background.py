"""Background task runs: `Task.delay` / `Task.apply_async` and the futures they return.

A call publishes a task run for a task worker (``flowbus task-worker``) to execute and
returns at once with a :class:`TaskRunFuture`. It works from any process that can reach
the server (``FLOWBUS_NATS_URL``), with or without a flow around it. The record and the
job are `events.background`'s; results are read from the shared result store.

Example::

    from flowbus import task

    @task
    def add(x: int, y: int) -> int:
        return x + y

    future = add.delay(1, 2)          # a task worker runs it
    assert future.result(timeout=30) == 3
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from events import background as contract
from events.errors import NotFound
from flowbus._delay_queue import delay_queue
from flowbus._remote import CALL_TIMEOUT
from flowbus.exceptions import ConfigurationError, FailedRun, ParameterBindError
from flowbus.results import resolve_result_store, server_connection
from flowbus.serializers import resolve_serializer
from flowbus.states import ResultRef, State, StateType

R = TypeVar("R")

# A parameter that is a future of another background run is sent as this marker and
# replaced by that run's result in the worker, once the run is final.
UPSTREAM_MARKER = "__flowbus_task_run__"


def _remote() -> Any:
    remote = server_connection()
    if remote is None:
        raise ConfigurationError(
            "Task.delay needs a flowbus server to queue the run: set FLOWBUS_NATS_URL "
            "(e.g. nats://127.0.0.1:4222) to the NATS server the task workers use.")
    return remote


def _upstream_ids(wait_for: Iterable[Any] | None) -> list[str]:
    ids = []
    for item in wait_for or ():
        if not isinstance(item, TaskRunFuture):
            raise TypeError(
                f"wait_for of a background task run takes futures of other background runs "
                f"(what .delay() returned), got {type(item).__name__}")
        ids.append(item.task_run_id)
    return ids


def _encode_parameters(task: Any, parameters: dict[str, Any]) -> tuple[bytes, list[str]]:
    upstream: list[str] = []
    plain: dict[str, Any] = {}
    for name, value in parameters.items():
        if isinstance(value, TaskRunFuture):
            upstream.append(value.task_run_id)
            plain[name] = {UPSTREAM_MARKER: value.task_run_id}
        else:
            plain[name] = value
    payload = task._serializer.dumps(plain)
    if len(payload) > contract.MAX_PARAMETERS_BYTES:
        raise ParameterBindError(
            f"The parameters of {task.name!r} take {len(payload)} bytes encoded; a background "
            f"run carries at most {contract.MAX_PARAMETERS_BYTES}. Pass a reference (a path, "
            "a key) instead of the data.")
    return payload, upstream


def _readable(payload: bytes, serializer_name: str) -> dict[str, Any] | None:
    if serializer_name != "json":
        return None
    value = json.loads(payload)
    return value if isinstance(value, dict) else None


def submit_background(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                      wait_for: Iterable[Any] | None = None) -> TaskRunFuture[Any]:
    """Queue one run of ``task`` for a task worker; the engine of `Task.delay`."""
    parameters = task._shape.bind(args, kwargs)
    payload, upstream = _encode_parameters(task, parameters)
    upstream += [i for i in _upstream_ids(wait_for) if i not in upstream]
    remote = _remote()
    run_id = str(uuid.uuid4())
    serializer_name = getattr(task._serializer, "name", "custom")
    record = contract.scheduled_record(
        task_run_id=run_id, name=f"{task.name}-{run_id[:3]}", task_key=task.task_key,
        task_name=task.name, tags=list(task._tags),
        parameters=_readable(payload, serializer_name), wait_for=upstream)
    job = contract.TaskJob(task_run_id=run_id, task_key=task.task_key, parameters=payload)
    delay_queue(remote).publish(contract.queue_messages(remote.layout, record, job), CALL_TIMEOUT)
    return TaskRunFuture(run_id, task)


def read_record(task_run_id: str) -> contract.TaskRunRecord | None:
    """The current record of a background task run, or None if there is none."""
    remote = _remote()
    entry = remote.call(remote.kv(remote.layout.task_runs).get(task_run_id))
    return None if entry is None else contract.TaskRunRecord.decode(entry.value)


class _InRecord:
    """The result store of a result carried by the run's record (read-only)."""

    __slots__ = ("_payload",)

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def read(self, key: str) -> bytes:
        return self._payload


class TaskRunFuture(Generic[R]):
    """The eventual final state of a background task run; usable from any process.

    ``TaskRunFuture(task_run_id)`` rebuilds one from an id (its result is then read
    with the default result store and the serializer the record names).
    """

    __slots__ = ("_final", "_task", "task_run_id")

    def __init__(self, task_run_id: str, task: Any = None) -> None:
        self.task_run_id = task_run_id
        self._task = task
        self._final: State[R] | None = None

    def _record(self) -> contract.TaskRunRecord:
        record = read_record(self.task_run_id)
        if record is None:
            raise LookupError(f"No background task run {self.task_run_id!r} (it may have expired)")
        return record

    @property
    def state(self) -> State[R]:
        """The run's current state (final once done)."""
        if self._final is not None:
            return self._final
        state = self._state_of(self._record())
        if state.is_final():
            self._final = state
        return state

    def done(self) -> bool:
        return self.state.is_final()

    def cancel(self) -> bool:
        """Cancel the run (a flowbus addition: Prefect has no cancel for background
        runs): a queued run never starts, a running one is stopped by its worker.
        False when the run was already final. Raises ``LookupError`` for an unknown run."""
        remote = _remote()
        kv = remote.kv(remote.layout.task_runs)
        try:
            remote.call(contract.cancel_task_run(kv, self.task_run_id, "cancelled by its future",
                                                   bus=remote.bus))
        except contract.NotCancellable:
            return False
        except NotFound:
            raise LookupError(f"No background task run {self.task_run_id!r} (it may have expired)") \
                from None
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the run is final, or ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while not self.state.is_final():
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 1.5, 0.1)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """Wait for the run and return its result; raise its error if it failed."""
        self.wait(timeout)
        state = self.state
        if not state.is_final():
            raise TimeoutError(f"Task run {self.task_run_id} did not finish within {timeout} seconds")
        return state.result(raise_on_failure=raise_on_failure, _sync=True)

    async def wait_async(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (Prefect's signature; a wait, not a deadline)
    ) -> None:
        """`wait` for async code (a web handler): the polling runs in a worker thread."""
        await asyncio.to_thread(self.wait, timeout)

    async def result_async(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (Prefect's signature; a wait, not a deadline)
        raise_on_failure: bool = True,
    ) -> R:
        """`result` for async code (a web handler): the waiting runs in a worker thread."""
        return await asyncio.to_thread(self.result, timeout, raise_on_failure)

    def _state_of(self, record: contract.TaskRunRecord) -> State[Any]:
        name, kind = record.state.name, StateType(record.state.type.value)
        data: Any = None
        if kind is StateType.COMPLETED and (record.result_key or record.result_value) is not None:
            task = self._task
            serializer = (task._serializer if task is not None
                          else resolve_serializer(record.result_serializer or "json"))
            if record.result_value is not None:  # small: the record carries it
                data = ResultRef(_InRecord(record.result_value), record.id, serializer)
            else:
                store = resolve_result_store(task.result_storage if task is not None else None)
                data = ResultRef(store, str(record.result_key), serializer)
        elif kind is StateType.FAILED:  # crashed and cancelled states raise their own errors
            data = (rebuild_error(record.error) if record.error is not None else None) \
                or FailedRun(record.state.message or f"Task run ended {name}")
        return State(kind, name=name, message=record.state.message, data=data,
                     timestamp=record.state.timestamp)

    def __repr__(self) -> str:
        return f"TaskRunFuture(task_run_id={self.task_run_id!r})"


def rebuild_error(error: contract.TaskRunError) -> BaseException | None:
    """The exception a failed run raised, made again from its record: its class must be
    an exception class of a module this process has already imported (nothing is
    imported on a record's say-so) and take its recorded args; else None."""
    module_name, _, qualname = error.type.partition(":")
    module = sys.modules.get(module_name)
    if module is None or error.args is None:
        return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, Exception)):
        return None
    try:
        exc = obj(*error.args)
    except Exception:  # a constructor that does not take its own args back
        return None
    if not isinstance(exc, BaseException):
        return None
    # As unpickling does (Prefect pickles the exception): the attributes set outside
    # args come back, whatever the constructor set them to.
    for name, value in (error.attributes or {}).items():
        if contract.is_error_attribute(name):
            with contextlib.suppress(Exception):  # a read-only property, a slot
                setattr(exc, name, value)
    return exc


def apply_async(task: Any, args: tuple[Any, ...] | None = None, kwargs: dict[str, Any] | None = None,
                wait_for: Iterable[Any] | None = None, dependencies: dict[str, Any] | None = None,
                ) -> TaskRunFuture[Any]:
    """`Task.apply_async`: `submit_background` with Prefect's argument shape."""
    if dependencies is not None and not isinstance(dependencies, dict):
        raise TypeError(f"dependencies must be a dict of parameter name -> inputs, "
                        f"got {type(dependencies).__name__}")
    return submit_background(task, tuple(args or ()), dict(kwargs or {}), wait_for)


__all__ = ["TaskRunFuture", "apply_async", "read_record", "rebuild_error", "submit_background"]
