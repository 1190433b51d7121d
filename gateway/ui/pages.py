"""The UI's pages: dashboard, flow runs, a run, deployments, a deployment, login.

Handlers read through the same functions as the REST API (the run index, the KV
buckets, the deployment loaders), so a page shows exactly what the API answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ValidationError

from events.records import Deployment, FlowRun
from events.states import FLOW_RUN_STATES
from gateway.api.flow_runs import FlowRunQuery, query_runs
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.runindex import RUN_INDEX, RunFilter
from gateway.ui import resume_view, runs_view
from gateway.ui.forms import fields_of
from gateway.ui.render import render
from gateway.ui.session import (
    LoginRequired,
    Viewer,
    ensure_csrf,
    login,
    login_redirect,
    safe_next,
    start_session,
    viewer_of,
    with_csrf,
)

PageHandler = Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]
_FILTERS = ("state", "deployment", "flow", "tag", "q", "since", "until")


def page(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A UI handler: the viewer resolved (or a login redirect), errors shown as a page."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            viewer = with_csrf(await viewer_of(request))
        except LoginRequired:
            raise login_redirect(request) from None
        try:
            response = await handler(request, viewer)
        except Problem as exc:
            response = render("error.html", status=exc.status, viewer=viewer, nav="",
                              status_code=exc.status, detail=exc.detail)
        ensure_csrf(request, response, viewer)
        return response

    handle.__name__ = handler.__name__
    return handle


Q = TypeVar("Q", bound=BaseModel)


def _filters(request: web.Request) -> dict[str, str]:
    return {k: request.query[k] for k in _FILTERS if request.query.get(k)}


def run_query(request: web.Request, limit: int = 50) -> FlowRunQuery:
    """The list query of the page's filters (a bad filter is a 400 page naming it)."""
    return list_query(request, FlowRunQuery, _filters(request), limit)


def list_query(request: web.Request, model: type[Q], filters: dict[str, Any], limit: int) -> Q:
    """``model`` (a list query) from a page's ``filters``, ``limit`` and the request's
    ``offset``; a bad filter is a 400 page naming it."""
    values: dict[str, Any] = {**filters, "limit": limit}
    if request.query.get("offset"):
        values["offset"] = request.query["offset"]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Problem(400, f"filter {where}: {first['msg']}") from None


@page
async def runs_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    query = run_query(request)
    listing = await query_runs(request, query)
    filters = _filters(request)
    return render("runs.html", viewer=viewer, nav="runs", page=listing, filters=filters,
                  states=FLOW_RUN_STATES, qs=urlencode(filters),
                  pager=runs_view.pager(listing, filters))


@page
async def runs_rows(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """The rows of the run list alone: what the live list swaps in when runs change."""
    listing = await query_runs(request, run_query(request))
    filters = _filters(request)
    return render("_run_rows.html", viewer=viewer, page=listing,
                  pager=runs_view.pager(listing, filters))


@page
async def run_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    run = await runs_view.load_run(request)
    details = await runs_view.details(request, run)
    resume = await resume_view.resume_context(request, run)
    return render("run.html", viewer=viewer, nav="runs", run=run, **details, **resume)


async def _deployments(request: web.Request) -> list[Deployment]:
    gateway = gateway_of(request)
    kv = await gateway.kv(gateway.bus.layout.deployments)
    out: list[Deployment] = []
    for key in await kv.keys():
        entry = await kv.get(key)
        if entry is not None:
            out.append(Deployment.model_validate_json(entry.value))
    return sorted(out, key=lambda d: d.name)


@page
async def deployments_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    deployments = await _deployments(request)
    index = request.app[RUN_INDEX]
    last: dict[str, list[FlowRun]] = {}
    for dep in deployments:
        listing = await query_runs(request, FlowRunQuery(deployment=dep.name, limit=5))
        last[dep.name] = listing.items
    return render("deployments.html", viewer=viewer, nav="deployments",
                  deployments=deployments, last=last,
                  totals={d.name: index.count(RunFilter(deployment=d.name)) for d in deployments})


async def load_deployment(request: web.Request) -> Deployment:
    gateway = gateway_of(request)
    name = request.match_info["name"]
    kv = await gateway.kv(gateway.bus.layout.deployments)
    entry = await kv.get(name) if runs_view.is_key(name) else None
    if entry is None:
        raise Problem(404, f"no deployment named {name[:100]!r}")
    return Deployment.model_validate_json(entry.value)


def deployment_view(request: web.Request, viewer: Viewer, deployment: Deployment,
                    runs: list[FlowRun], *, status: int = 200,
                    errors: dict[str, str] | None = None,
                    values: dict[str, str] | None = None) -> web.Response:
    return render("deployment.html", status=status, viewer=viewer, nav="deployments",
                  deployment=deployment, runs=runs, fields=fields_of(deployment.parameter_schema),
                  errors=errors or {}, values={**deployment.parameters, **(values or {})})


@page
async def deployment_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    deployment = await load_deployment(request)
    runs = await query_runs(request, FlowRunQuery(deployment=deployment.name, limit=20))
    return deployment_view(request, viewer, deployment, runs.items)


async def login_page(request: web.Request) -> web.StreamResponse:
    if not gateway_of(request).settings.auth:
        raise web.HTTPFound("/ui")
    return render("login.html", viewer=None, nav="", error="",
                  next=safe_next(request.query.get("next")))


async def login_submit(request: web.Request) -> web.StreamResponse:
    if not gateway_of(request).settings.auth:
        raise web.HTTPFound("/ui")
    form = await request.post()
    api_key = str(form.get("api_key") or "")
    target = safe_next(str(form.get("next") or ""))
    if await login(request, api_key) is None:
        return render("login.html", status=401, viewer=None, nav="", next=target,
                      error="That API key is unknown, revoked or cannot read.")
    response = web.Response(status=303, headers={"Location": target})
    start_session(request, response, api_key)
    return response
