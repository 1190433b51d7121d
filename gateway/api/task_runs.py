"""``/api/v1/task-runs``: background task runs (``Task.delay``), from ``<ns>-task-runs``."""

from __future__ import annotations

import re
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from events.background import TASK_RUN_ID_PATTERN, TaskRunRecord, all_task_runs, queue_stats
from events.run_logs import API_READER, run_log_reader
from gateway.api import run_control
from gateway.api.flow_runs import LogLines, stream_logs
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()

TaskRunStateName = Literal[
    "Scheduled", "Running", "Completed", "Cached", "Failed", "Crashed", "Cancelled"]


class TaskRunQuery(PageQuery):
    """Which background task runs to list."""

    state: TaskRunStateName | None = Field(default=None, description="only runs in this state")
    task: str | None = Field(default=None, max_length=512,
                             description="only runs of this task (its key or name)")


class TaskRun(TaskRunRecord):
    """A background task run as stored (the record task workers write)."""


class TaskQueue(BaseModel):
    """The background-task queue now."""

    depth: int = Field(description="jobs not yet acknowledged: waiting or running")
    oldest_age_seconds: float = Field(description="age of the oldest of them, 0 when none")


@router.route("GET", "/task-runs", scope=Scope.READ,
              summary="List background task runs, newest first",
              query=TaskRunQuery, response=Page[TaskRun])
async def list_task_runs(call: Call) -> Page[TaskRun]:
    query: TaskRunQuery = call.query
    kv = await call.gateway.kv(call.gateway.bus.layout.task_runs)
    runs = [TaskRun.model_validate(r.model_dump()) for r in await all_task_runs(kv)
            if (query.state is None or r.state.name == query.state)
            and (query.task is None or query.task in (r.task_key, r.task_name))]
    return page_of(runs, query)


@router.route("GET", "/task-runs/{task_run_id}", scope=Scope.READ,
              summary="Get a background task run", response=TaskRun, errors=(404,))
async def get_task_run(call: Call) -> TaskRun:
    run_id = check_key(call.path("task_run_id"), "task run")
    kv = await call.gateway.kv(call.gateway.bus.layout.task_runs)
    entry = await kv.get(run_id)
    if entry is None:
        raise Problem(404, f"no task run with id {run_id!r}")
    return TaskRun.model_validate_json(entry.value)


class TaskRunLogQuery(BaseModel):
    """Which log lines of a background task run to return."""

    model_config = ConfigDict(extra="forbid")

    follow: bool = Field(default=False, description="stream new lines (NDJSON) until the run ends")
    limit: int = Field(default=1000, ge=1, le=10_000, description="most lines returned")


@router.route("GET", "/task-runs/{task_run_id}/logs", scope=Scope.READ,
              summary="A background task run's logs; ?follow=true streams them as NDJSON "
                      "until the run ends",
              query=TaskRunLogQuery, response=LogLines, errors=(404,),
              stream="application/x-ndjson")
async def task_run_logs(call: Call) -> LogLines | web.StreamResponse:
    run_id = check_key(call.path("task_run_id"), "task run")
    if re.fullmatch(TASK_RUN_ID_PATTERN, run_id) is None:  # it names a subject token
        raise Problem(404, f"no task run named {run_id[:100]!r}")
    kv = await call.gateway.kv(call.gateway.bus.layout.task_runs)
    if await kv.get(run_id) is None:
        raise Problem(404, f"no task run with id {run_id!r}")
    query: TaskRunLogQuery = call.query

    async def finished() -> bool:
        entry = await kv.get(run_id)
        return entry is None or TaskRunRecord.decode(entry.value).state.is_final()

    async with run_log_reader(call.gateway.bus, run_id, API_READER) as reader:
        if not query.follow:
            return LogLines(items=(await reader.read(query.limit))[:query.limit])
        with call.gateway.stream_slot():
            return await stream_logs(call, reader, finished)


@router.route("POST", "/task-runs/{task_run_id}/cancel", scope=Scope.WRITE,
              summary="Cancel a background task run (a queued one never starts; a running "
                      "one is stopped by its worker)",
              response=TaskRun, errors=(404, 409, 503))
async def cancel(call: Call) -> TaskRun:
    run_id = check_key(call.path("task_run_id"), "task run")
    kv = await call.gateway.kv(call.gateway.bus.layout.task_runs)
    if await kv.get(run_id) is None:  # unknown: 404 without asking the orchestrator
        raise Problem(404, f"no task run with id {run_id!r}")
    # The leading orchestrator writes the record (the gateway's NATS user may not).
    record = await run_control.cancel_task_run(call.gateway, run_id)
    return TaskRun.model_validate(record.model_dump())


@router.route("GET", "/task-queue", scope=Scope.READ,
              summary="Depth of the background-task queue and age of its oldest job",
              response=TaskQueue)
async def get_task_queue(call: Call) -> TaskQueue:
    stats = await queue_stats(call.gateway.bus)
    return TaskQueue(depth=stats.depth, oldest_age_seconds=stats.oldest_age_seconds)
