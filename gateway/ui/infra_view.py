"""The sources-and-webhooks page (the runners page is :mod:`gateway.ui.runners_view`).

Webhooks are created and deleted through the REST API's own handlers, with its admin
scope: a webhook lets anyone holding its URL (and secret) send events. A webhook's
secret made by the gateway is shown once, in the answer to the form that created it,
and never again (the answer is not cached and not redirected to).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from events.source_activity import WRITE_INTERVAL_SECONDS, SourceActivity, get_activity
from events.source_store import SourceStore
from events.sources import Source, SourceState
from gateway.api import webhooks_api
from gateway.api.routing import Call
from gateway.api.webhooks_api import WebhookCreateBody
from gateway.auth import Scope
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.signatures import Verifier
from gateway.ui.pages import page
from gateway.ui.render import render
from gateway.ui.session import CSRF_FIELD, Viewer, check_action
from gateway.webhooks import Webhook, WebhookWithSecret, load

_FORM_FIELDS = ("slug", "verifier", "description", "signature_header")
_MAX_FIELD_CHARS = 1000


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A source as the page shows it."""

    source: Source
    status: SourceState | None
    activity: SourceActivity | None
    dead_letters: int


async def _sources(request: web.Request) -> list[SourceRow]:
    gateway = gateway_of(request)
    layout = gateway.bus.layout
    store = SourceStore(gateway.bus, await gateway.kv(layout.sources),
                        await gateway.kv(layout.source_dead_letters))
    sources = sorted(await store.all(), key=lambda s: s.name)
    letters = await store.dead_letters.keys()  # one read for every source's count
    return [SourceRow(s, await store.status(s.name), await get_activity(store.sources, s.name),
                      sum(1 for key in letters if key.startswith(f"{s.name}.")))
            for s in sources]


async def _webhooks(request: web.Request) -> list[Webhook]:
    gateway = gateway_of(request)
    kv = await gateway.kv(gateway.bus.layout.webhooks)
    hooks = []
    for slug in sorted(await kv.keys()):
        hook = await load(kv, slug)
        if hook is not None:
            hooks.append(hook.public())
    return hooks


async def _sources_view(request: web.Request, viewer: Viewer, *, status: int = 200,
                        created: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                        values: dict[str, str] | None = None) -> web.Response:
    return render("sources.html", status=status, viewer=viewer, nav="sources",
                  sources=await _sources(request), webhooks=await _webhooks(request),
                  activity_interval=WRITE_INTERVAL_SECONDS,
                  verifiers=[v.value for v in Verifier], created=created, errors=errors or {},
                  values=values or {}, base=f"{request.scheme}://{request.host}",
                  deleted=request.query.get("deleted", "")[:100])


@page
async def sources_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _sources_view(request, viewer)


async def _admin_form(request: web.Request, viewer: Viewer) -> dict[str, str]:
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if any(len(v) > _MAX_FIELD_CHARS for v in values.values()):
        raise Problem(413, f"a form field is longer than {_MAX_FIELD_CHARS} characters")
    await check_action(request, viewer, values.get(CSRF_FIELD), Scope.ADMIN)
    return values


@page
async def create_webhook(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """Create a webhook from the form; the answer shows its URL and (made here) secret once."""
    form = await _admin_form(request, viewer)
    values = {k: form[k].strip() for k in _FORM_FIELDS if form.get(k, "").strip()}
    try:
        body = WebhookCreateBody.model_validate(values)
    except ValidationError as exc:
        errors = {".".join(str(p) for p in e["loc"]) or "form": e["msg"] for e in exc.errors()}
        return await _sources_view(request, viewer, status=400, errors=errors, values=values)
    call = Call(request, gateway_of(request), viewer.principal, body, None)
    try:
        made = await webhooks_api.create_webhook(call)
    except Problem as exc:
        if exc.status != 409:
            raise
        return await _sources_view(request, viewer, status=409, errors={"slug": exc.detail},
                                   values=values)
    assert isinstance(made, WebhookWithSecret)  # the API handler's declared answer
    # The form takes no secret of the sender's, so the secret is the one made here.
    return await _sources_view(request, viewer, status=201,
                               created={"slug": made.slug, "secret": made.secret})


@page
async def delete_webhook(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    await _admin_form(request, viewer)
    call = Call(request, gateway_of(request), viewer.principal, None, None)
    await webhooks_api.delete_webhook(call)
    raise web.HTTPSeeOther(f"/ui/sources?deleted={request.match_info['slug']}")
