"""Background task runs: the job, the record and the lease rules (Task.delay, task workers).

``Task.delay()`` (the SDK, any process) creates a :class:`TaskRunRecord` in the
``<ns>-task-runs`` KV bucket (key = task-run id, state Scheduled), then publishes a
:class:`TaskJob` on ``<ns>.tasks.<task token>`` in the ``<NS>_TASKS`` stream (work-queue
retention). Task workers (``flowbus task-worker``) pull the jobs of the tasks they serve
through one durable consumer per task (:func:`consumer_name`), so several workers share
the work. Every write of a record is compare-and-set on its KV revision; the rules
below decide what a worker may do with a job, as flow-run claims do for runners:

- a Scheduled run is claimed (Running, a new attempt, the worker's id);
- a Running run whose record was refreshed within the lease is left alone (the job is
  handed back for later); one whose holder stopped refreshing it is taken over, and
  counted as a crash (:data:`MAX_CRASHES` crashes end it Crashed);
- a final run's job is dropped (a run cancelled while queued never starts).

Cancelling (:func:`cancel_task_run`) moves a non-final record to Cancelled; the worker
holding a running attempt sees its next refresh conflict, reads the record and stops
the body.

A worker holding an attempt refreshes the record's ``updated`` time and the job's ack
deadline; a worker whose write conflicts has lost the run and writes nothing more.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.bus import MSG_ID_HEADER, Bus
from events.cloudevent import CloudEvent
from events.errors import FlowbusError, NotFound
from events.kv import EXPECTED_REVISION_HEADER, KV, kv_subject
from events.layout import Layout
from events.records import State, StateData, utcnow
from events.settings import register

# A run whose attempts are cut off (worker killed, lease lost) this many times is Crashed.
MAX_CRASHES = 3
TASK_KEY_MAX = 512
TASK_RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# The job carries the parameters inline; a larger call is refused by Task.delay.
MAX_PARAMETERS_BYTES = 512 * 1024
# The state names a task-run record passes through.
TASK_RUN_STATES = ("Scheduled", "Running", "Completed", "Cached", "Failed", "Crashed", "Cancelled")
ERROR_MESSAGE_MAX = 4096
# The encoded args of an exception kept in the record, at most.
ERROR_ARGS_MAX_BYTES = 16 * 1024
# A result encoded in at most this many bytes travels in the final record itself (no
# result-store write, and no read of it by the caller), unless the task names its own
# result storage.
INLINE_RESULT_BYTES = 4096


@register
class TaskWorkerSettings(BaseSettings):
    """How one task worker takes and executes background task runs."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_TASK_WORKER_", extra="forbid", frozen=True)

    limit: int = Field(default=10, ge=1, le=1024, description="task runs executed at once")
    lease_seconds: float = Field(
        default=15.0, ge=1.0, le=3600.0,
        description="a run whose worker stopped refreshing it this long is taken over")
    drain_timeout: float = Field(
        default=30.0, ge=0, description="seconds running task runs get to finish after SIGTERM")


def task_token(task_key: str) -> str:
    """The subject token and consumer suffix of a task key (any key is usable)."""
    return hashlib.sha256(task_key.encode()).hexdigest()[:24]


def task_subject(namespace: str, task_key: str) -> str:
    """The subject the jobs of ``task_key`` are published on."""
    return f"{namespace}.tasks.{task_token(task_key)}"


def consumer_name(task_key: str) -> str:
    """The durable consumer that every worker serving ``task_key`` shares."""
    return f"tasks-{task_token(task_key)}"


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _b64decode(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise ValueError(f"{what} must be base64") from None
    return value


class TaskJob(BaseModel):
    """One job message: which task run, of which task, with its encoded parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_run_id: str = Field(pattern=TASK_RUN_ID_PATTERN, description="key of the record")
    task_key: str = Field(min_length=1, max_length=TASK_KEY_MAX)
    parameters: bytes = Field(
        default=b"", max_length=MAX_PARAMETERS_BYTES,
        description="the call's parameters, encoded with the task's serializer")

    @field_serializer("parameters")
    def _b64(self, value: bytes) -> str:
        return _b64encode(value)

    @field_validator("parameters", mode="before")
    @classmethod
    def _from_b64(cls, value: Any) -> Any:
        return _b64decode(value, "parameters")


class TaskRunError(BaseModel):
    """The exception a failed background run raised, as far as JSON can carry it.

    The caller's ``future.result()`` raises ``cls(*args)`` again, with ``attributes``
    set on it, when ``type`` names an exception class the caller has imported;
    otherwise a ``FailedRun`` with ``message``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(max_length=512, description="module:qualified name of the class")
    args: list[Any] | None = Field(
        default=None, description="the exception's args, when they are JSON; else None")
    message: str = Field(max_length=ERROR_MESSAGE_MAX, description="str() of the exception")
    attributes: dict[str, Any] | None = Field(
        default=None, description="the exception's attributes set outside args (its "
        "__dict__, notes included) whose values are JSON")

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in value or {}:
            if not is_error_attribute(name):
                raise ValueError(f"{name!r} is not an attribute an error may carry")
        return value


class TaskRunRecord(BaseModel):
    """The current record of a background task run (``<ns>-task-runs``, key = id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=TASK_RUN_ID_PATTERN)
    name: str = Field(max_length=256)
    task_key: str = Field(min_length=1, max_length=TASK_KEY_MAX)
    task_name: str = Field(max_length=256)
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] | None = Field(
        default=None, description="the parameters, when they are JSON (for people to read)")
    state: State
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow, description="last write: the lease")
    start_time: datetime | None = None
    end_time: datetime | None = None
    worker_id: str | None = Field(default=None, description="the worker holding the attempt")
    run_count: int = Field(default=0, ge=0, description="attempts claimed by a worker")
    crashes: int = Field(default=0, ge=0, description="attempts cut off before they ended")
    result_key: str | None = Field(default=None, description="key in the result store")
    result_serializer: str | None = Field(default=None, description="how the result is encoded")
    result_value: bytes | None = Field(
        default=None, max_length=INLINE_RESULT_BYTES,
        description="the encoded result itself (base64) when it is small; then there is no "
                    "result_key")
    wait_for: list[str] = Field(default_factory=list, description="upstream task-run ids")
    error: TaskRunError | None = Field(default=None, description="what a Failed run raised")

    @field_serializer("result_value")
    def _result_b64(self, value: bytes | None) -> str | None:
        return None if value is None else _b64encode(value)

    @field_validator("result_value", mode="before")
    @classmethod
    def _result_from_b64(cls, value: Any) -> Any:
        return _b64decode(value, "result_value")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, raw: bytes) -> TaskRunRecord:
        return cls.model_validate_json(raw)

    def moved(self, name: str, message: str | None = None, **changes: Any) -> TaskRunRecord:
        """This record in state ``name`` (``updated`` now), with other fields changed."""
        data = StateData(attempt=changes.get("run_count", self.run_count) or None)
        state = State.named(name, message, data=data)
        return self.model_copy(update={"state": state, "updated": utcnow(), **changes})


def scheduled_record(*, task_run_id: str, name: str, task_key: str, task_name: str,
                     tags: list[str], parameters: dict[str, Any] | None,
                     wait_for: list[str]) -> TaskRunRecord:
    """The record ``Task.delay`` creates before it publishes the job."""
    return TaskRunRecord(
        id=task_run_id, name=name, task_key=task_key, task_name=task_name, tags=tags,
        parameters=parameters, wait_for=wait_for, state=State.named("Scheduled"))


Message = tuple[str, bytes, dict[str, str] | None]


def queue_messages(layout: Layout, record: TaskRunRecord, job: TaskJob) -> list[Message]:
    """The two messages that queue a run, in order: the record, written as a KV
    ``create`` (a publish that JetStream refuses when the key holds anything), then the
    job. Published pipelined on one connection, record first; a worker that gets the
    job before the record is readable hands the job back for a moment."""
    return [
        (kv_subject(layout.task_runs, record.id), record.encode(), {EXPECTED_REVISION_HEADER: "0"}),
        (task_subject(layout.namespace, job.task_key), job.model_dump_json().encode(),
         {MSG_ID_HEADER: f"task-run-{job.task_run_id}"}),
    ]


async def queue_task_run(bus: Bus, record: TaskRunRecord, job: TaskJob) -> None:
    """Create ``record`` and publish ``job`` in one pipelined window (one round trip)."""
    await bus.publish_raw_many(queue_messages(bus.layout, record, job))


# Deliveries of a job whose record is not (yet) readable before the job is dropped.
MISSING_RECORD_DELIVERIES = 5


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The background-task queue: jobs not yet acknowledged (waiting or running), and
    the age of the oldest of them."""

    depth: int
    oldest_age_seconds: float


async def queue_stats(bus: Bus) -> QueueStats:
    """What the queue holds now (the tasks stream keeps a job until it is acknowledged)."""
    js = bus._js  # events/ is the one package that talks to JetStream itself
    stream = bus.layout.tasks_stream
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return QueueStats(0, 0.0)
    depth = int(info.state.messages)
    if depth == 0:
        return QueueStats(0, 0.0)
    try:
        first = await js.get_msg(stream, seq=info.state.first_seq)
    except NotFoundError:  # acknowledged meanwhile
        return QueueStats(depth, 0.0)
    when = first.time if isinstance(first.time, datetime) else None
    age = (utcnow() - when).total_seconds() if when is not None else 0.0
    return QueueStats(depth, max(age, 0.0))


async def all_task_runs(kv: KV) -> list[TaskRunRecord]:
    """Every stored task-run record (unreadable values are skipped), newest first."""
    records = []
    keys = await kv.keys()
    for start in range(0, len(keys), 256):  # reads in flight together, a bounded number
        for entry in await asyncio.gather(*(kv.get(k) for k in keys[start:start + 256])):
            if entry is None:
                continue
            try:
                records.append(TaskRunRecord.decode(entry.value))
            except ValueError:
                continue
    records.sort(key=lambda r: r.created, reverse=True)
    return records


Action = Literal["claim", "take-over", "later", "drop"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What a worker does with a job: claim it, take a dead attempt over, hand it back
    for ``later`` (after ``delay`` seconds), or ``drop`` (ack) it."""

    action: Action
    reason: str
    delay: float = 0.0


def decide(record: TaskRunRecord, *, now: datetime, lease: float) -> Decision:
    """What to do with the job of ``record``, given the lease period in seconds."""
    name = record.state.name
    if record.state.is_final():
        return Decision("drop", f"the task run is already {name}")
    if name == "Scheduled":
        return Decision("claim", "the task run is Scheduled")
    age = (now - record.updated).total_seconds()
    if age < lease:
        return Decision("later", f"worker {record.worker_id} holds it (seen {age:.1f}s ago)",
                        lease - age)
    return Decision("take-over", f"worker {record.worker_id} stopped refreshing its lease "
                                 f"({age:.1f}s ago)")


def claimed(record: TaskRunRecord, worker_id: str, decision: Decision) -> TaskRunRecord:
    """The record of a new attempt held by ``worker_id`` (Running), or Crashed when a
    taken-over run has been cut off :data:`MAX_CRASHES` times."""
    crashes = record.crashes + (1 if decision.action == "take-over" else 0)
    if crashes >= MAX_CRASHES:
        return record.moved("Crashed", f"cut off {crashes} times; last: {decision.reason}",
                            crashes=crashes, end_time=utcnow(), worker_id=None)
    message = None if decision.action == "claim" else f"retried after a crash: {decision.reason}"
    now = utcnow()
    return record.moved("Running", message, worker_id=worker_id, run_count=record.run_count + 1,
                        crashes=crashes, start_time=record.start_time or now)


def finished(record: TaskRunRecord, name: str, message: str | None, *,
             result_key: str | None, result_serializer: str | None,
             error: TaskRunError | None = None,
             result_value: bytes | None = None) -> TaskRunRecord:
    """The record of an attempt that ended in state ``name``; its result stored under
    ``result_key`` or carried inline as ``result_value``."""
    return record.moved(name, message, end_time=utcnow(), result_key=result_key,
                        result_serializer=result_serializer, error=error,
                        result_value=result_value)


class NotCancellable(FlowbusError):
    """The task run is already final (Completed, Failed, Crashed, Cancelled)."""


CANCELLED_MESSAGE = "The task run was cancelled."


def cancelled(record: TaskRunRecord, reason: str | None = None) -> TaskRunRecord:
    """``record`` moved to Cancelled (final): a queued job is then dropped unrun, and the
    worker holding a running attempt sees its lease lost to it and stops the body."""
    if record.state.is_final():
        raise NotCancellable(f"task run {record.id} is already {record.state.name}; only a "
                             "Scheduled or Running task run can be cancelled")
    return record.moved("Cancelled", reason or CANCELLED_MESSAGE, end_time=utcnow())


CANCEL_EVENT_TYPE = "flowbus.task-run.Cancelled"
CANCEL_EVENT_SOURCE = "flowbus/background"


def cancelled_event(record: TaskRunRecord) -> CloudEvent:
    """The ``flowbus.task-run.Cancelled`` event of a run cancelled before its body ran
    (a running body's own engine announces its end). Its data has the keys of the
    task engine's task-run events; its id is fixed per run, so a repeat is stored once."""
    state = record.state
    return CloudEvent(
        id=f"{record.id}-cancelled", source=CANCEL_EVENT_SOURCE, type=CANCEL_EVENT_TYPE,
        subject=f"flowbus.task-run.{record.id}", time=record.updated,
        datacontenttype="application/json",
        data={"id": record.id, "name": record.name, "task_name": record.task_name,
              "task_key": record.task_key, "parameters": record.parameters,
              "tags": list(record.tags), "run_count": record.run_count,
              "flow_run_id": None, "cache_key": None,
              "state": {"type": state.type.value, "name": state.name, "message": state.message,
                        "timestamp": state.timestamp.isoformat()}})


async def cancel_task_run(kv: KV, task_run_id: str, reason: str | None = None, *,
                          bus: Bus | None = None) -> TaskRunRecord:
    """Cancel a background task run by compare-and-set on its record; the record after.

    With ``bus``, a run cancelled while still queued (Scheduled) has its
    :func:`cancelled_event` published (its job is dropped unrun, so no engine will).
    Raises :class:`~events.errors.NotFound` (no such run) and :class:`NotCancellable`.
    """
    result: list[TaskRunRecord] = []
    queued: list[bool] = []

    def step(raw: bytes | None) -> bytes:
        if raw is None:
            raise NotFound(f"no task run with id {task_run_id!r}")
        before = TaskRunRecord.decode(raw)
        new = cancelled(before, reason)
        result[:], queued[:] = [new], [before.state.name == "Scheduled"]
        return new.encode()

    await kv.update(task_run_id, step)
    if bus is not None and queued[0]:
        await bus.publish(cancelled_event(result[0]))
    return result[0]


def is_error_attribute(name: str) -> bool:
    """Whether an exception attribute named ``name`` travels in a record: a plain
    identifier (no dunder, so nothing of the class machinery), or ``__notes__``."""
    return name == "__notes__" or (name.isidentifier() and not name.startswith("__"))


def _json_size(value: Any) -> int | None:
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError):
        return None


def describe_error(exc: BaseException) -> TaskRunError:
    """What the record keeps of ``exc``: its class, its args when they are (small) JSON,
    the attributes of its ``__dict__`` that are JSON (within the same bound, dropped
    one by one otherwise), and its message."""
    kind = type(exc)
    args: list[Any] | None = list(exc.args)
    size = _json_size(args)
    if size is None or size > ERROR_ARGS_MAX_BYTES:
        args, size = None, 0
    attributes: dict[str, Any] = {}
    budget = ERROR_ARGS_MAX_BYTES - (size or 0)
    for name, value in getattr(exc, "__dict__", {}).items():
        if not isinstance(name, str) or not is_error_attribute(name):
            continue
        cost = _json_size({name: value})
        if cost is not None and cost <= budget:
            attributes[name] = value
            budget -= cost
    return TaskRunError(type=f"{kind.__module__}:{kind.__qualname__}", args=args,
                        message=str(exc)[:ERROR_MESSAGE_MAX], attributes=attributes or None)


__all__ = [
    "CANCELLED_MESSAGE",
    "CANCEL_EVENT_TYPE",
    "INLINE_RESULT_BYTES",
    "MAX_CRASHES",
    "MAX_PARAMETERS_BYTES",
    "TASK_RUN_STATES",
    "Decision",
    "NotCancellable",
    "QueueStats",
    "TaskJob",
    "TaskRunError",
    "TaskRunRecord",
    "TaskWorkerSettings",
    "all_task_runs",
    "cancel_task_run",
    "cancelled",
    "cancelled_event",
    "claimed",
    "consumer_name",
    "decide",
    "describe_error",
    "finished",
    "is_error_attribute",
    "queue_messages",
    "queue_stats",
    "queue_task_run",
    "scheduled_record",
    "task_subject",
    "task_token",
]
