"""Read-only pages of background task runs (``Task.delay``) and assets.

Both read through the REST API's own handlers (``GET /api/v1/task-runs``,
``GET /api/v1/assets``), so a page shows exactly what the API answers; a bad filter is
a 400 page naming it.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel

from events.background import TASK_RUN_STATES
from gateway.api.assets import AssetQuery, list_all_assets
from gateway.api.paging import Page
from gateway.api.routing import Call
from gateway.api.task_runs import TaskRunQuery, list_task_runs
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.ui.pages import list_query, page
from gateway.ui.render import render
from gateway.ui.session import Viewer

_PAGE = 50
Q = TypeVar("Q", bound=BaseModel)


def _query(request: web.Request, model: type[Q], names: tuple[str, ...]) -> Q:
    filters = {k: request.query[k] for k in names if request.query.get(k)}
    return list_query(request, model, filters, _PAGE)


def _pager(path: str, listing: Page[Any], filters: dict[str, str]) -> dict[str, str | None]:
    def link(offset: int) -> str:
        return f"{path}?" + urlencode({**filters, "offset": str(offset)})

    prev = link(max(0, listing.offset - listing.limit)) if listing.offset > 0 else None
    nxt = link(listing.next_offset) if listing.next_offset is not None else None
    return {"prev": prev, "next": nxt}


async def _listing(request: web.Request, viewer: Viewer, handler: Any,
                   query: BaseModel) -> Page[Any]:
    """The page the API's list ``handler`` answers for ``query``."""
    listing = await handler(Call(request, gateway_of(request), viewer.principal, None, query))
    if not isinstance(listing, Page):
        raise Problem(500, "the list answered no page")  # the API handlers always return one
    return listing


@page
async def task_runs_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    names = ("state", "task")
    query = _query(request, TaskRunQuery, names)
    listing = await _listing(request, viewer, list_task_runs, query)
    filters = {k: request.query[k] for k in names if request.query.get(k)}
    return render("task_runs.html", viewer=viewer, nav="task-runs", page=listing,
                  filters=filters, states=TASK_RUN_STATES,
                  pager=_pager("/ui/task-runs", listing, filters))


@page
async def assets_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    names = ("prefix",)
    query = _query(request, AssetQuery, names)
    listing = await _listing(request, viewer, list_all_assets, query)
    filters = {k: request.query[k] for k in names if request.query.get(k)}
    return render("assets.html", viewer=viewer, nav="assets", page=listing, filters=filters,
                  pager=_pager("/ui/assets", listing, filters))
