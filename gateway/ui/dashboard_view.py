"""The dashboard: runs by state over a window, runs per minute, latency, failing deployments.

Counts come from the run index (one filter and a time range: two bisections each).
Event-to-run latency and failing deployments read the newest runs of the window, up
to :data:`LATENCY_SAMPLE` and :data:`FAILURE_SAMPLE` of them; the page says how many.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web

from events.automation_store import count_dead_letters
from events.records import FlowRun
from events.runs import event_time
from events.states import FLOW_RUN_STATES
from gateway.api.flow_runs import FlowRunQuery, query_runs
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.runindex import RUN_INDEX, RunFilter
from gateway.ui.pages import page
from gateway.ui.render import render
from gateway.ui.session import Viewer

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
DEFAULT_WINDOW = "24h"
LATENCY_SAMPLE = 1000
FAILURE_SAMPLE = 500
FAILED_STATES = ("Failed", "Crashed")


@dataclass(frozen=True, slots=True)
class Latency:
    """Event-to-run latency percentiles (seconds) over ``samples`` runs."""

    samples: int
    p50: float
    p90: float
    p99: float


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of a sorted, non-empty list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_of(runs: list[FlowRun]) -> Latency | None:
    """From the triggering event's time to the run's creation, for runs that record it."""
    values = []
    for run in runs:
        when = event_time(run.triggering_event)
        if when is not None:
            values.append(max(0.0, (run.created - when).total_seconds()))
    if not values:
        return None
    values.sort()
    return Latency(len(values), percentile(values, 50), percentile(values, 90),
                   percentile(values, 99))


@dataclass(slots=True)
class FailingDeployment:
    """A deployment with failed or crashed runs in the window."""

    name: str
    failures: int
    runs: int
    last: FlowRun


def failing(failures: list[FlowRun], runs_of: dict[str, int]) -> list[FailingDeployment]:
    found: dict[str, FailingDeployment] = {}
    for run in failures:
        name = run.deployment_name
        if name is None:
            continue
        entry = found.get(name)
        if entry is None:
            found[name] = FailingDeployment(name, 1, runs_of.get(name, 0), run)
        else:
            entry.failures += 1
            if run.created > entry.last.created:
                entry.last = run
    return sorted(found.values(), key=lambda d: (-d.failures, d.name))


def _window(request: web.Request) -> str:
    window = request.query.get("window") or DEFAULT_WINDOW
    if window != "all" and window not in WINDOWS:
        raise Problem(400, f"window {window[:20]!r}: one of {', '.join(WINDOWS)} or all")
    return window


@page
async def dashboard(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    window = _window(request)
    since = None if window == "all" else datetime.now(UTC) - WINDOWS[window]
    index = request.app[RUN_INDEX]
    recent = await query_runs(request, FlowRunQuery(limit=10))  # first: waits for the index
    counts = {name: index.count(RunFilter(state=name, since=since)) for name in FLOW_RUN_STATES}
    failures: list[FlowRun] = []
    for state in FAILED_STATES:
        listing = await query_runs(request, FlowRunQuery(state=state, since=since,
                                                         limit=FAILURE_SAMPLE))
        failures.extend(listing.items)
    failures.sort(key=lambda r: r.created, reverse=True)
    names = {r.deployment_name for r in failures if r.deployment_name}
    runs_of = {n: index.count(RunFilter(deployment=n, since=since)) for n in names}
    sample = await query_runs(request, FlowRunQuery(since=since, limit=LATENCY_SAMPLE))
    now = time.time()
    return render(
        "dashboard.html", viewer=viewer, nav="dashboard", counts=counts,
        dead=await count_dead_letters(gateway_of(request).bus),
        total=index.count(RunFilter(since=since)), stored=len(index), window=window,
        windows=[*WINDOWS, "all"], per_minute=index.histogram(now - 3600, now, 60),
        recent=recent.items, failed=failures[:10], late=counts.get("Late", 0),
        crashed=counts.get("Crashed", 0), latency=latency_of(sample.items),
        sampled=len(sample.items), failing=failing(failures, runs_of)[:10],
        since_qs="" if since is None else urlencode({"since": since.isoformat(timespec="seconds")}),
    )
