"""``/api/v1/flow-runs``: list, get, cancel, resume, and read or follow a run's logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.records import FlowRun
from events.run_logs import API_READER, RunLogReader, follow, run_log_reader
from events.states import FLOW_RUN_STATES
from gateway.api import run_control
from gateway.api.paging import Page, PageQuery
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import Scope
from gateway.context import closing_of, gateway_of
from gateway.problems import Problem
from gateway.runindex import RUN_INDEX, RunFilter
from gateway.textindex import GRAM

router = ApiRouter()
# The shortest text search: the text index is made of 3-letter grams, and a shorter text
# would be a pass over every run for an answer matching most of them.
MIN_TEXT = GRAM
# How long a list waits for a starting gateway's index before answering 503.
_INDEX_WAIT_SECONDS = 10.0


class FlowRunQuery(PageQuery):
    """Filters of the flow-run list (newest first)."""

    deployment: str | None = Field(default=None, max_length=256,
                                   description="deployment name or id")
    state: str | None = Field(default=None, description="state name, e.g. Running")
    since: datetime | None = Field(default=None, description="created at or after (RFC 3339)")
    until: datetime | None = Field(default=None, description="created before (RFC 3339)")
    flow: str | None = Field(default=None, max_length=256, description="flow name")
    tag: str | None = Field(default=None, max_length=256, description="runs carrying this tag")
    q: str | None = Field(default=None, max_length=256,
                          description="text found in the id, name, flow, deployment or tags "
                                      f"(at least {MIN_TEXT} characters)")
    event: str | None = Field(default=None, max_length=256,
                              description="id of the event that triggered the runs")

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str | None) -> str | None:
        if value is not None and value not in FLOW_RUN_STATES:
            raise ValueError(f"unknown state {value!r}; one of {', '.join(FLOW_RUN_STATES)}")
        return value

    @field_validator("q")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value and len(value) < MIN_TEXT:
            raise ValueError(f"search text {value!r} is shorter than {MIN_TEXT} characters; "
                             f"give at least {MIN_TEXT} (a shorter one matches most runs)")
        return value or None

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset, e.g. 2024-05-01T12:00:00Z")
        return value


class LogQuery(BaseModel):
    """Which logs to return."""

    model_config = ConfigDict(extra="forbid")

    follow: bool = Field(default=False, description="stream new lines (NDJSON) until the run ends")
    limit: int = Field(default=1000, ge=1, le=10_000, description="most lines returned")


class LogLines(BaseModel):
    """A run's log records, oldest first."""

    items: list[dict[str, Any]] = Field(description="log records as the runner sent them")


def _filter(q: FlowRunQuery) -> RunFilter:
    return RunFilter(state=q.state, deployment=q.deployment, flow=q.flow, tag=q.tag,
                     since=q.since, until=q.until, text=q.q or None, event=q.event)


async def page_records(request: web.Request, query: FlowRunQuery) -> tuple[list[bytes], int]:
    """The stored JSON of one page of runs (newest first) and how many match in all.

    The index is first brought up to the bucket's latest revision, so a run written
    before the request is in the answer; records it does not hold are read from KV.
    """
    gateway = gateway_of(request)
    index = request.app[RUN_INDEX]
    kv = await gateway.kv(gateway.bus.layout.flow_runs)
    try:
        async with asyncio.timeout(_INDEX_WAIT_SECONDS):
            await index.wait_revision(await kv.last_revision())
    except TimeoutError:
        raise Problem(503, "the flow-run index is still loading or behind; retry shortly",
                      headers={"Retry-After": str(gateway.settings.retry_after_seconds)}) from None
    ids, total = index.query(_filter(query), query.offset, query.limit)
    records = [index.record(run_id) for run_id in ids]
    missing = [i for i, raw in enumerate(records) if raw is None]
    for i, entry in zip(missing, await asyncio.gather(*(kv.get(ids[i]) for i in missing)),
                        strict=True):
        records[i] = entry.value if entry is not None else None
    return [raw for raw in records if raw is not None], total


def _page_json(records: list[bytes], total: int, query: FlowRunQuery) -> bytes:
    end = query.offset + len(records)
    tail = {"total": total, "limit": query.limit, "offset": query.offset,
            "next_offset": end if end < total else None}
    # The records are the stored FlowRun JSON: joined as they are, not parsed and re-encoded.
    return b'{"items":[' + b",".join(records) + b"]," + json.dumps(tail).encode()[1:]


async def query_runs(request: web.Request, query: FlowRunQuery) -> Page[FlowRun]:
    """One page of runs as records (what the UI renders)."""
    records, total = await page_records(request, query)
    end = query.offset + len(records)
    return Page[FlowRun](items=[FlowRun.model_validate_json(r) for r in records], total=total,
                         limit=query.limit, offset=query.offset,
                         next_offset=end if end < total else None)


@router.route("GET", "/flow-runs", scope=Scope.READ, summary="List flow runs, newest first",
              query=FlowRunQuery, response=Page[FlowRun])
async def list_flow_runs(call: Call) -> web.Response:
    records, total = await page_records(call.request, call.query)
    return web.Response(body=_page_json(records, total, call.query),
                        content_type="application/json")


async def _load(call: Call) -> FlowRun:
    run_id = check_key(call.path("flow_run_id"), "flow run")
    kv = await call.gateway.kv(call.gateway.bus.layout.flow_runs)
    entry = await kv.get(run_id)
    if entry is None:
        raise Problem(404, f"no flow run with id {run_id!r}")
    return FlowRun.model_validate_json(entry.value)


@router.route("GET", "/flow-runs/{flow_run_id}", scope=Scope.READ, summary="Get a flow run",
              response=FlowRun, errors=(404,))
async def get_flow_run(call: Call) -> FlowRun:
    return await _load(call)


@router.route("POST", "/flow-runs/{flow_run_id}/cancel", scope=Scope.WRITE,
              summary="Cancel a flow run (it becomes Cancelling; its runner stops it)",
              response=FlowRun, errors=(404, 409, 503))
async def cancel_flow_run(call: Call) -> FlowRun:
    run = await _load(call)
    # The leading orchestrator writes the record and publishes the Cancelling event.
    return await run_control.change_run(call.gateway, "cancel", run.id)


@router.route("DELETE", "/flow-runs/{flow_run_id}", scope=Scope.WRITE,
              summary="Delete a flow run that is not claimed yet or is final",
              status=204, errors=(404, 409, 503))
async def delete_flow_run(call: Call) -> None:
    # The leading orchestrator deletes the record (the gateway's NATS user may not):
    # only a run no runner holds (Scheduled-type or final); a held one is 409.
    run = await _load(call)  # an unknown run is 404 without asking the orchestrator
    await run_control.change_run(call.gateway, "delete", run.id)


class ResumeRequest(BaseModel):
    """The body of a resume: the input the paused run waits for, if any."""

    model_config = ConfigDict(extra="forbid")

    run_input: dict[str, Any] | None = Field(
        default=None, description="input validated against the schema the paused run saved")


@router.route("POST", "/flow-runs/{flow_run_id}/resume", scope=Scope.WRITE,
              summary="Resume a Paused or Suspended flow run (with the input it waits for)",
              body=ResumeRequest, response=FlowRun, errors=(404, 409, 422, 503))
async def resume_flow_run(call: Call) -> FlowRun:
    run = await _load(call)
    body: ResumeRequest = call.body
    try:
        return await run_control.change_run(call.gateway, "resume", run.id, body.run_input)
    except run_control.InputRefused as exc:
        raise Problem(422, str(exc)) from None


@router.route("GET", "/flow-runs/{flow_run_id}/logs", scope=Scope.READ,
              summary="A run's logs; ?follow=true streams them as NDJSON until the run ends",
              query=LogQuery, response=LogLines, errors=(404,), stream="application/x-ndjson")
async def flow_run_logs(call: Call) -> LogLines | web.StreamResponse:
    run = await _load(call)
    query: LogQuery = call.query
    kv = await call.gateway.kv(call.gateway.bus.layout.flow_runs)

    async def finished() -> bool:
        entry = await kv.get(run.id)
        return entry is None or FlowRun.model_validate_json(entry.value).state.is_final()

    async with run_log_reader(call.gateway.bus, run.id, API_READER) as reader:
        if not query.follow:
            return LogLines(items=(await reader.read(query.limit))[:query.limit])
        with call.gateway.stream_slot():
            return await stream_logs(call, reader, finished)


async def stream_logs(call: Call, reader: RunLogReader,
                      finished: Callable[[], Awaitable[bool]]) -> web.StreamResponse:
    """A run's records as NDJSON lines until it is ``finished`` or the gateway closes."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(call.request)
    async for records in follow(reader, finished, closing_of(call.request), wait=0.5):
        await response.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    await response.write_eof()
    return response
