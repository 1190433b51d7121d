"""The runners-and-limits page: the runners of each pool with their slots and heartbeat.

Runners are listed from the runner registry (:mod:`events.runner_registry`): each
running runner rewrites its record on every heartbeat, so an idle runner is listed
too, and a runner that died without stopping shows as stale until its record
expires. Runs held by a runner with no record (one that cannot write the registry)
are still found through the run records, as before the registry existed. The
runners table refreshes itself every two seconds (``/ui/runners/rows``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from events import concurrency
from events.records import FlowRun
from gateway.api.flow_runs import FlowRunQuery, query_runs
from gateway.api.runners import Runner, registered_runners
from gateway.context import gateway_of
from gateway.ui.pages import page
from gateway.ui.render import render
from gateway.ui.session import Viewer

HELD_STATES = ("Pending", "Running", "Cancelling")
MAX_HELD = 1000  # runs read per held state to find the runners
REFRESH_SECONDS = 2


@dataclass(slots=True)
class RunnerView:
    """A runner: its registry record (None for one known only by its runs) and its runs."""

    id: str
    record: Runner | None = None
    pools: set[str] = field(default_factory=set)
    runs: list[FlowRun] = field(default_factory=list)


@dataclass(slots=True)
class Runners:
    """What the runners table shows."""

    pools: dict[str, list[RunnerView]]
    unregistered: list[RunnerView]
    waiting: list[FlowRun]
    cut: bool


async def runners_of(request: web.Request) -> Runners:
    """Registered runners by pool, runners known only by their runs, unclaimed runs."""
    registered = {r.runner_id: RunnerView(r.runner_id, r, {r.pool})
                  for r in await registered_runners(gateway_of(request))}
    others: dict[str, RunnerView] = {}
    waiting: list[FlowRun] = []
    cut = False
    for state in HELD_STATES:
        listing = await query_runs(request, FlowRunQuery(state=state, limit=MAX_HELD))
        cut = cut or listing.next_offset is not None
        for run in listing.items:
            if run.runner_id is None:
                waiting.append(run)
                continue
            view = registered.get(run.runner_id)
            if view is None:
                view = others.setdefault(run.runner_id, RunnerView(run.runner_id))
            view.pools.add(run.work_pool)
            view.runs.append(run)
    pools: dict[str, list[RunnerView]] = {}
    for view in registered.values():
        assert view.record is not None
        pools.setdefault(view.record.pool, []).append(view)
    return Runners(dict(sorted(pools.items())), sorted(others.values(), key=lambda v: v.id),
                   waiting, cut)


def _context(runners: Runners) -> dict[str, Any]:
    return {"runners": runners, "max_held": MAX_HELD, "refresh": REFRESH_SECONDS}


@page
async def runners_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    runners = await runners_of(request)
    gateway = gateway_of(request)
    limits = await concurrency.list_limits(await gateway.kv(gateway.bus.layout.concurrency))
    return render("runners.html", viewer=viewer, nav="runners",
                  limits=sorted(limits, key=lambda i: i.name), **_context(runners))


@page
async def runners_rows(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """The runners tables alone: what the page swaps in every few seconds."""
    return render("_runner_rows.html", viewer=viewer, **_context(await runners_of(request)))
