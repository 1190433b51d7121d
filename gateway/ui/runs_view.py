"""What a run's page shows: the record, its result or error, its logs, and list paging."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from events.logrecords import level_name, level_number
from events.records import FlowRun
from events.run_logs import RunLogReader
from gateway.api.deployments import read_result
from gateway.api.flow_runs import FlowRunQuery, query_runs
from gateway.api.paging import Page
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.ui.run_history import MAX_TRIGGERED, gantt, read_history, run_artifacts

_KEY = re.compile(r"[-_=.A-Za-z0-9]{1,256}")
LOG_PAGE = 1000


def is_key(value: str) -> bool:
    """Whether ``value`` could name a stored record (else it is a 404 without a lookup)."""
    return _KEY.fullmatch(value) is not None and not value.startswith(".") and not value.endswith(".")


async def load_run(request: web.Request) -> FlowRun:
    gateway = gateway_of(request)
    run_id = request.match_info["flow_run_id"]
    kv = await gateway.kv(gateway.bus.layout.flow_runs)
    entry = await kv.get(run_id) if is_key(run_id) else None
    if entry is None:
        raise Problem(404, f"no flow run with id {run_id[:100]!r}")
    return FlowRun.model_validate_json(entry.value)


@dataclass(frozen=True, slots=True)
class LogLine:
    """A log record as the page shows it."""

    time: str
    level: str
    logger: str
    message: str

    @property
    def severity(self) -> int:
        return level_number(self.level)


def log_line(record: dict[str, Any]) -> LogLine:
    level = level_name(record.get("level", ""))
    stamp = record.get("timestamp") or record.get("time") or ""
    if isinstance(stamp, int | float):
        stamp = datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S.%f")[:-3]
    elif isinstance(stamp, str) and "T" in stamp:
        stamp = stamp.split("T", 1)[1][:12]
    return LogLine(time=str(stamp), level=str(level), logger=str(record.get("name") or ""),
                   message=str(record.get("message") or ""))


async def drain(reader: RunLogReader, limit: int, wait: float = 0.2) -> list[LogLine]:
    """Up to about ``limit`` lines available now (waiting at most ``wait`` for the first)."""
    return [log_line(r) for r in await reader.read(limit, wait)]


def error_of(run: FlowRun) -> str | None:
    """The failure shown on a failed or crashed run: its message and any traceback."""
    if run.state.type.value not in ("FAILED", "CRASHED"):
        return None
    # The runner writes the reason, traceback included, into the state's message
    # (the typed state data holds only the attempt, events/records.py).
    return run.state.message or run.state.name


async def details(request: web.Request, run: FlowRun) -> dict[str, Any]:
    gateway = gateway_of(request)
    result_found, result = (False, None)
    if run.state.type.value == "COMPLETED":
        result_found, result = await read_result(gateway, run.id)
    history = await read_history(gateway.bus, run)
    triggered: dict[str, FlowRun] = {}
    for event_id in history.event_ids:
        if len(triggered) >= MAX_TRIGGERED:
            break
        listing = await query_runs(request, FlowRunQuery(event=event_id, limit=MAX_TRIGGERED))
        triggered.update((r.id, r) for r in listing.items)
    return {
        "history": history,
        "bars": gantt(run, history.task_runs),
        "artifacts": await run_artifacts(gateway.bus, run.id),
        "triggered": sorted(triggered.values(), key=lambda r: r.created)[:MAX_TRIGGERED],
        "error": error_of(run),
        "result_found": result_found,
        "result": result,
        "final": run.state.is_final(),
        "cancellable": not run.state.is_final() and run.state.name != "Cancelling",
    }


def pager(listing: Page[FlowRun], filters: dict[str, str]) -> dict[str, str | None]:
    """Links to the previous and next page of a list, keeping its filters."""
    def link(offset: int) -> str:
        return "/ui/runs?" + urlencode({**filters, "offset": str(offset)})

    prev = link(max(0, listing.offset - listing.limit)) if listing.offset > 0 else None
    nxt = link(listing.next_offset) if listing.next_offset is not None else None
    return {"prev": prev, "next": nxt}
