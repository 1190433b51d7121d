"""``/api/v1/webhooks``: manage webhook definitions; the secret is shown only at creation."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from events.errors import AlreadyExists
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import Scope
from gateway.problems import Problem, invalid_input
from gateway.webhooks import (
    StoredWebhook,
    Webhook,
    WebhookCreate,
    WebhookSpec,
    WebhookUpdate,
    WebhookWithSecret,
    load,
    new_secret,
    stored_form,
)

router = ApiRouter()


@router.route("POST", "/webhooks", scope=Scope.ADMIN, summary="Create a webhook",
              body=WebhookCreate, response=WebhookWithSecret, status=201, errors=(409,))
async def create_webhook(call: Call) -> WebhookWithSecret:
    body: WebhookCreate = call.body
    now = datetime.now(UTC)
    stored = StoredWebhook(**body.model_dump(), created=now, updated=now, secret=new_secret())
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    try:
        await kv.create(body.slug, stored_form(stored, call.gateway.secrets))
    except AlreadyExists:
        raise Problem(409, f"a webhook named {body.slug!r} already exists") from None
    return WebhookWithSecret.model_validate(stored.model_dump())


@router.route("GET", "/webhooks", scope=Scope.READ, summary="List webhooks",
              query=PageQuery, response=Page[Webhook])
async def list_webhooks(call: Call) -> Page[Webhook]:
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    hooks = []
    for slug in await kv.keys():
        hook = await load(kv, slug)
        if hook is not None:
            hooks.append(hook.public())
    return page_of(hooks, call.query)


async def _get(call: Call) -> StoredWebhook:
    slug = check_key(call.path("slug"), "webhook")
    hook = await load(await call.gateway.kv(call.gateway.bus.layout.webhooks), slug)
    if hook is None:
        raise Problem(404, f"no webhook named {slug!r}")
    return hook


@router.route("GET", "/webhooks/{slug}", scope=Scope.READ, summary="Get a webhook",
              response=Webhook, errors=(404,))
async def get_webhook(call: Call) -> Webhook:
    return (await _get(call)).public()


@router.route("PATCH", "/webhooks/{slug}", scope=Scope.ADMIN, summary="Change a webhook",
              body=WebhookUpdate, response=Webhook, errors=(404,))
async def update_webhook(call: Call) -> Webhook:
    body: WebhookUpdate = call.body
    hook = await _get(call)
    changes = body.model_dump(exclude_unset=True)
    try:
        spec = WebhookSpec.model_validate(
            {**hook.model_dump(include=set(WebhookSpec.model_fields)), **changes}
        )
    except ValidationError as exc:
        raise invalid_input(exc) from None
    updated = hook.model_copy(update={**spec.model_dump(), "updated": datetime.now(UTC)})
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    await kv.put(hook.slug, stored_form(updated, call.gateway.secrets))
    return updated.public()


@router.route("POST", "/webhooks/{slug}/rotate-secret", scope=Scope.ADMIN,
              summary="Replace a webhook's secret (the new one is shown once)",
              response=WebhookWithSecret, errors=(404,))
async def rotate_webhook_secret(call: Call) -> WebhookWithSecret:
    hook = await _get(call)
    updated = hook.model_copy(update={"secret": new_secret(), "updated": datetime.now(UTC)})
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    await kv.put(hook.slug, stored_form(updated, call.gateway.secrets))
    return WebhookWithSecret.model_validate(updated.model_dump())


@router.route("DELETE", "/webhooks/{slug}", scope=Scope.ADMIN, summary="Delete a webhook",
              status=204, errors=(404,))
async def delete_webhook(call: Call) -> None:
    hook = await _get(call)
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    await kv.delete(hook.slug)
