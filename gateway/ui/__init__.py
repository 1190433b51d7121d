"""The web UI at ``/ui``: server-rendered pages (Jinja2), htmx, and Server-Sent Events.

The page modules are imported on the first UI request, not when the gateway starts:
a gateway nobody browses pays nothing for them.

>>> install(app)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/ui", "dashboard_view:dashboard"),
    ("GET", "/ui/login", "pages:login_page"),
    ("POST", "/ui/login", "pages:login_submit"),
    ("POST", "/ui/logout", "actions:logout"),
    ("GET", "/ui/static/{digest:[0-9a-f]{12}}/{name:.+}", "render:serve_static"),
    ("GET", "/ui/runs", "pages:runs_page"),
    ("GET", "/ui/runs/rows", "pages:runs_rows"),
    ("GET", "/ui/runs/live", "live:runs_stream"),
    ("GET", "/ui/runs/{flow_run_id}", "pages:run_page"),
    ("GET", "/ui/runs/{flow_run_id}/live", "live:run_stream"),
    ("POST", "/ui/runs/{flow_run_id}/cancel", "actions:cancel_run"),
    ("POST", "/ui/runs/{flow_run_id}/rerun", "actions:rerun"),
    ("POST", "/ui/runs/{flow_run_id}/resume", "actions:resume_run"),
    ("GET", "/ui/deployments", "pages:deployments_page"),
    ("GET", "/ui/deployments/{name}", "pages:deployment_page"),
    ("POST", "/ui/deployments/{name}/run", "actions:run_deployment"),
    ("POST", "/ui/deployments/{name}/pause", "actions:pause_deployment"),
    ("POST", "/ui/deployments/{name}/resume", "actions:resume_deployment"),
    ("GET", "/ui/events", "events_view:events_page"),
    ("GET", "/ui/events/live", "events_view:events_stream"),
    ("GET", "/ui/event", "events_view:event_page"),
    ("GET", "/ui/automations", "automations_view:automations_page"),
    ("POST", "/ui/automations/dead-letters/{key}/redrive", "automations_view:redrive"),
    ("GET", "/ui/sources", "infra_view:sources_page"),
    ("POST", "/ui/webhooks", "infra_view:create_webhook"),
    ("POST", "/ui/webhooks/{slug}/delete", "infra_view:delete_webhook"),
    ("GET", "/ui/runners", "runners_view:runners_page"),
    ("GET", "/ui/runners/rows", "runners_view:runners_rows"),
    ("GET", "/ui/task-runs", "catalog_view:task_runs_page"),
    ("GET", "/ui/assets", "catalog_view:assets_page"),
]


def _lazy(target: str) -> Handler:
    module_name, _, attr = target.partition(":")
    found: list[Handler] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        if not found:
            module = importlib.import_module(f"gateway.ui.{module_name}")
            found.append(getattr(module, attr))
        return await found[0](request)

    handle.__name__ = attr
    return handle


def install(app: web.Application) -> None:
    """Add the UI's routes to the gateway's app."""
    for method, path, target in ROUTES:
        app.router.add_route(method, path, _lazy(target))


def handler(target: str) -> Handler:
    """The handler a route names (``module:function``), imported now (for tests)."""
    module_name, _, attr = target.partition(":")
    found: Handler = getattr(importlib.import_module(f"gateway.ui.{module_name}"), attr)
    return found
