"""The web UI at ``/ui``: server-rendered pages (Jinja2), htmx, and Server-Sent Events.

>>> install(app)   # doctest: +SKIP
"""

from __future__ import annotations

from aiohttp import web


def install(app: web.Application) -> None:
    """Add the UI's routes to the gateway's app."""
    from gateway.ui import actions, automations_view, events_view, live, pages
    from gateway.ui.render import serve_static

    get, post = app.router.add_get, app.router.add_post
    get("/ui", pages.dashboard)
    get("/ui/login", pages.login_page)
    post("/ui/login", pages.login_submit)
    post("/ui/logout", actions.logout)
    get("/ui/static/{digest:[0-9a-f]{12}}/{name:.+}", serve_static)
    get("/ui/runs", pages.runs_page)
    get("/ui/runs/rows", pages.runs_rows)
    get("/ui/runs/live", live.runs_stream)
    get("/ui/runs/{flow_run_id}", pages.run_page)
    get("/ui/runs/{flow_run_id}/live", live.run_stream)
    post("/ui/runs/{flow_run_id}/cancel", actions.cancel_run)
    post("/ui/runs/{flow_run_id}/rerun", actions.rerun)
    get("/ui/deployments", pages.deployments_page)
    get("/ui/deployments/{name}", pages.deployment_page)
    post("/ui/deployments/{name}/run", actions.run_deployment)
    post("/ui/deployments/{name}/pause", actions.pause_deployment)
    post("/ui/deployments/{name}/resume", actions.resume_deployment)
    get("/ui/events", events_view.events_page)
    get("/ui/events/live", events_view.events_stream)
    get("/ui/event", events_view.event_page)
    get("/ui/automations", automations_view.automations_page)
    post("/ui/automations/dead-letters/{key}/redrive", automations_view.redrive)
