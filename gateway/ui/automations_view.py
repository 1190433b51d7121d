"""The automations page: automations with their state and last firings
(:mod:`gateway.ui.firings`), and the dead letters with redrive.

Only names, states, trigger event names and action types are shown: an action's
definition can hold a webhook's headers or a channel's credentials, and the UI never
renders a secret.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from events.automation_store import list_automations, list_dead_letters, request_redrive
from events.errors import NotFound
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.ui.firings import MAX_READ, last_firings
from gateway.ui.pages import page
from gateway.ui.render import render
from gateway.ui.session import CSRF_FIELD, Viewer, check_action

_MAX_KEY_CHARS = 512


def _expects(trigger: Any) -> list[str]:
    data = trigger.model_dump() if hasattr(trigger, "model_dump") else dict(trigger or {})
    found: list[str] = []
    for key in ("expect", "after"):
        found.extend(str(x) for x in data.get(key) or ())
    for inner in data.get("triggers") or ():
        found.extend(_expects(inner))
    return found


@page
async def automations_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    bus = gateway_of(request).bus
    automations = sorted(await list_automations(bus), key=lambda a: a.name)
    firings = await last_firings(bus)
    rows: list[dict[str, Any]] = [{
        "id": a.id, "firings": firings.by_automation.get(a.id, []), "name": a.name, "enabled": a.enabled, "description": a.description,
        "expects": _expects(a.trigger),
        "actions": [action.type for action in (*a.actions_on_trigger, *a.actions, *a.actions_on_resolve)],
        "updated": a.updated,
    } for a in automations]
    letters = list(reversed(await list_dead_letters(bus)))
    return render("automations.html", viewer=viewer, nav="automations", automations=rows,
                  letters=letters, redriven=request.query.get("redriven", ""),
                  window=firings.window_label, firings_cut=firings.cut,
                  max_read=MAX_READ)


@page
async def redrive(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    form = await request.post()
    token = form.get(CSRF_FIELD)
    await check_action(request, viewer, token if isinstance(token, str) else None)
    key = request.match_info["key"]
    if len(key) > _MAX_KEY_CHARS:
        raise Problem(404, "no dead letter with that key")
    try:
        await request_redrive(gateway_of(request).bus, key, source="flowbus.ui")
    except NotFound as exc:
        raise Problem(404, str(exc)) from None
    raise web.HTTPSeeOther("/ui/automations?redriven=1")
