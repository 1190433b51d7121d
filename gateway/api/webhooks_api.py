"""``/api/v1/webhooks``: manage webhook definitions; the secret is write-only.

A webhook's secret is the gateway's own (made at creation and by ``rotate-secret``,
shown once in that answer) or its owner's (``secret`` in the body, for senders such as
Stripe or Slack that make their own): an owner's secret is never sent back, not even
once; answers carry :data:`MASK` in its place. Listings never carry a secret.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from events.errors import AlreadyExists
from events.webhook_rules import SECRET_MAX_LENGTH, SECRET_MIN_LENGTH, secret_problem
from gateway.api.automations import MASK
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

_SECRET_DESCRIPTION = (
    f"the sender's own shared secret ({SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} printable "
    "characters, no spaces); write-only: never shown back. Left out, the gateway makes one "
    "and shows it once"
)


def _checked_secret(value: str | None) -> str | None:
    if value is not None:
        problem = secret_problem(value)
        if problem is not None:
            raise ValueError(f"the secret {problem}")
    return value


class WebhookCreateBody(WebhookCreate):
    """A new webhook, optionally with the secret its sender was given."""

    secret: str | None = Field(default=None, description=_SECRET_DESCRIPTION)

    _secret_shape = field_validator("secret")(_checked_secret)


class SecretBody(BaseModel):
    """A new secret for a webhook; none makes the gateway make one."""

    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(default=None, description=_SECRET_DESCRIPTION)

    _secret_shape = field_validator("secret")(_checked_secret)


def _answer(stored: StoredWebhook, given: bool) -> WebhookWithSecret:
    """The stored webhook with its secret shown (made here) or masked (the owner's)."""
    answer = WebhookWithSecret.model_validate(stored.model_dump())
    return answer.model_copy(update={"secret": MASK}) if given else answer


@router.route("POST", "/webhooks", scope=Scope.ADMIN, summary="Create a webhook",
              body=WebhookCreateBody, response=WebhookWithSecret, status=201, errors=(409,))
async def create_webhook(call: Call) -> WebhookWithSecret:
    body: WebhookCreateBody = call.body
    now = datetime.now(UTC)
    stored = StoredWebhook(**body.model_dump(exclude={"secret"}), created=now, updated=now,
                           secret=body.secret or new_secret())
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    try:
        await kv.create(body.slug, stored_form(stored, call.gateway.secrets))
    except AlreadyExists:
        raise Problem(409, f"a webhook named {body.slug!r} already exists") from None
    return _answer(stored, given=body.secret is not None)


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
              summary="Replace a webhook's secret (the owner's, or a new one shown once)",
              body=SecretBody, response=WebhookWithSecret, errors=(404,))
async def rotate_webhook_secret(call: Call) -> WebhookWithSecret:
    body: SecretBody = call.body
    hook = await _get(call)
    updated = hook.model_copy(update={"secret": body.secret or new_secret(),
                                      "updated": datetime.now(UTC)})
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    await kv.put(hook.slug, stored_form(updated, call.gateway.secrets))
    return _answer(updated, given=body.secret is not None)


@router.route("DELETE", "/webhooks/{slug}", scope=Scope.ADMIN, summary="Delete a webhook",
              status=204, errors=(404,))
async def delete_webhook(call: Call) -> None:
    hook = await _get(call)
    kv = await call.gateway.kv(call.gateway.bus.layout.webhooks)
    await kv.delete(hook.slug)
