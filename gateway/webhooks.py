"""Webhooks: ``/hooks/{slug}`` turns any HTTP request into a CloudEvent.

A definition (in the ``flowbus-webhooks`` bucket, key = slug) holds a secret, a
signature verifier and a template of CloudEvent attributes rendered over the
request (``method``, ``headers``, ``query``, ``body``, ``text``, ``slug``) with
:func:`events.templates.render_value`, so a single-expression template keeps its
type. A CloudEvent sent to a webhook (structured or binary mode) passes through
as it is, unless its type is a reserved ``flowbus.*`` one (403). Creating a webhook
needs an explicit verifier. The event id comes from the provider's delivery id when
there is one, else (signed webhooks) from a digest of the signed body, so a
redelivered webhook is stored once.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from events import jsonlimits
from events.cloudevent import STRUCTURED_CONTENT_TYPE, CloudEvent, build_event, is_binary_mode
from events.errors import InvalidEvent
from events.kv import KV
from events.replays import claim_delivery, replay_key
from events.sealed import SecretBox, is_sealed, open_value, require_box
from events.subjects import check_outside_type
from events.templates import TemplateError, check_value, render_value_async
from events.webhook_rules import SLUG_PATTERN
from gateway.api.routing import check_key
from gateway.context import Gateway, gateway_of
from gateway.ingest import decode_request, media_type, publish_events, refuse_reserved
from gateway.problems import Problem
from gateway.signatures import (
    SignatureRejected,
    Verifier,
    content_id,
    verify_github,
    verify_hmac,
    verify_slack,
    verify_stripe,
)

METHODS = ("POST", "PUT", "PATCH", "GET")
_TEMPLATE_KEYS = frozenset(
    {"type", "source", "subject", "id", "data", "datacontenttype", "dataschema", "extensions"}
)
# Headers that carry a provider's delivery id, tried in order.
_DELIVERY_HEADERS = ("X-GitHub-Delivery", "webhook-id", "X-Gitlab-Event-UUID", "X-Delivery-Id",
                     "Idempotency-Key")


class WebhookSpec(BaseModel):
    """What a webhook does with a request: verifier and template."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=1000, description="what the webhook is for")
    enabled: bool = Field(default=True, description="a disabled webhook answers 404")
    verifier: Verifier = Field(
        default=Verifier.NONE,
        description="signature check: none, github, stripe, slack or hmac (generic HMAC-SHA256)",
    )
    signature_header: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$",
        description="header holding the hex HMAC-SHA256 of the body (verifier hmac only)",
    )
    template: dict[str, Any] = Field(
        default_factory=lambda: {"type": "webhook.{{ slug }}", "data": "{{ body }}"},
        description="CloudEvent attributes as templates over method, headers, query, body, "
        "text and slug; 'type' is required",
    )

    @field_validator("template")
    @classmethod
    def _template_is_event(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - _TEMPLATE_KEYS)
        if unknown:
            raise ValueError(
                f"unknown CloudEvent attribute(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(_TEMPLATE_KEYS))}"
            )
        if not isinstance(value.get("type"), str) or not value["type"]:
            raise ValueError("'type' is required and must be a string (a template is allowed)")
        if "{" not in value["type"]:
            try:
                check_outside_type(value["type"])
            except InvalidEvent as exc:
                raise ValueError(f"'type' {exc.reason}") from None
        if "extensions" in value and not isinstance(value["extensions"], dict):
            raise ValueError("'extensions' must be an object")
        try:
            check_value(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _hmac_needs_header(self) -> WebhookSpec:
        if self.verifier == Verifier.HMAC and not self.signature_header:
            raise ValueError("verifier 'hmac' needs signature_header, e.g. X-Signature")
        return self


class WebhookCreate(WebhookSpec):
    """A new webhook; its verifier must be named ('none' only when asked for)."""

    slug: str = Field(pattern=SLUG_PATTERN, description="the URL part: /hooks/<slug>")
    verifier: Verifier = Field(
        description="signature check: github, stripe, slack, hmac (generic HMAC-SHA256), or "
        "none (anyone who knows the URL may send events; flagged in listings)",
    )


class WebhookUpdate(BaseModel):
    """Changes to a webhook; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=1000, description="new description")
    enabled: bool | None = Field(default=None, description="enable or disable")
    verifier: Verifier | None = Field(default=None, description="new verifier")
    signature_header: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$",
        description="new signature header",
    )
    template: dict[str, Any] | None = Field(default=None, description="new template")


class Webhook(WebhookSpec):
    """A webhook as the API shows it (never its secret)."""

    slug: str = Field(description="the URL part: /hooks/<slug>")
    created: datetime = Field(description="when it was created")
    updated: datetime = Field(description="when it last changed")
    unauthenticated: bool = Field(
        default=False,
        description="true when the verifier is 'none': anyone who knows the URL may send events",
    )

    @model_validator(mode="after")
    def _flag_unauthenticated(self) -> Webhook:
        self.unauthenticated = self.verifier == Verifier.NONE
        return self


class StoredWebhook(Webhook):
    """A webhook as stored, secret included."""

    secret: str = Field(description="the shared secret signatures are made with")

    def public(self) -> Webhook:
        return Webhook.model_validate(self.model_dump(exclude={"secret"}))


class WebhookWithSecret(Webhook):
    """The answer to creating a webhook: the only time the secret is shown."""

    secret: str = Field(description="the shared secret; shown once, store it now")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


async def load(kv: KV, slug: str) -> StoredWebhook | None:
    """The stored webhook, its secret as stored (sealed, or plain if stored before sealing)."""
    entry = await kv.get(slug)
    return None if entry is None else StoredWebhook.model_validate_json(entry.value)


def stored_form(hook: StoredWebhook, box: SecretBox | None) -> bytes:
    """The webhook as written to the bucket: its secret sealed (a plain one is sealed now)."""
    secret = hook.secret if is_sealed(hook.secret) else require_box(box, "storing a webhook secret").seal(hook.secret)
    return hook.model_copy(update={"secret": secret}).model_dump_json().encode()


def secret_of(hook: StoredWebhook, box: SecretBox | None) -> str:
    """The webhook's secret in plain text, for checking a signature."""
    return open_value(hook.secret, box)


# --- receiving --------------------------------------------------------------------------


async def verify(gateway: Gateway, hook: StoredWebhook, headers: Mapping[str, str], body: bytes) -> None:
    """Check the delivery's signature; :class:`SignatureRejected` saying why.

    A timestamped signature is claimed in the shared replay bucket (events/replays.py),
    so it is accepted once whichever gateway process receives it.
    """
    tolerance = gateway.settings.signature_tolerance_seconds
    now = gateway.clock()
    if hook.verifier == Verifier.NONE:
        return
    secret = secret_of(hook, gateway.secrets)
    if hook.verifier == Verifier.GITHUB:
        verify_github(secret, headers, body)
    elif hook.verifier == Verifier.STRIPE:
        timestamp = verify_stripe(secret, headers, body, now, tolerance)
        await _claim(gateway, replay_key(hook.slug, "stripe", timestamp, body), tolerance)
    elif hook.verifier == Verifier.SLACK:
        timestamp = verify_slack(secret, headers, body, now, tolerance)
        await _claim(gateway, replay_key(hook.slug, "slack", timestamp, body), tolerance)
    elif hook.verifier == Verifier.HMAC:
        assert hook.signature_header is not None
        verify_hmac(secret, headers, body, hook.signature_header)


async def _claim(gateway: Gateway, key: str, tolerance: float) -> None:
    if not await claim_delivery(await gateway.kv(gateway.bus.layout.webhook_replays), key, tolerance):
        raise SignatureRejected("this signature was already used: replayed delivery refused")


def parse_body(headers: Mapping[str, str], body: bytes) -> tuple[Any, str]:
    """The request body as JSON, a form (dict) or text; and the text itself."""
    text = body.decode("utf-8", errors="replace")
    if not body:
        return None, ""
    media = media_type(headers)
    if media == "application/json" or media.endswith("+json"):
        try:
            return jsonlimits.loads(body), text
        except (UnicodeDecodeError, ValueError) as exc:
            raise Problem(400, f"body is not valid JSON: {exc}") from None
    if media == "application/x-www-form-urlencoded":
        return dict(parse_qsl(text, keep_blank_values=True)), text
    return text, text


def delivery_id(headers: Mapping[str, str], body: Any) -> str | None:
    """The provider's id of this delivery (stable across its redeliveries), if any."""
    for name in _DELIVERY_HEADERS:
        value = headers.get(name)
        if value:
            return value[:256]
    if isinstance(body, dict):
        for field in ("event_id", "trigger_id"):  # Slack Events API, Slack commands
            value = body.get(field)
            if isinstance(value, str) and value:
                return value[:256]
        value = body.get("id")  # Stripe event ids (evt_...)
        if isinstance(value, str) and value.startswith("evt_"):
            return value[:256]
    return None


async def to_event(hook: StoredWebhook, request: web.Request, body: bytes) -> CloudEvent:
    """Render the webhook's template over the request into a CloudEvent (off the loop)."""
    parsed, text = parse_body(request.headers, body)
    context = {
        "method": request.method,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "query": dict(request.query),
        "body": parsed,
        "text": text,
        "slug": hook.slug,
    }
    try:
        rendered = await render_value_async(hook.template, context)
    except TemplateError as exc:
        raise Problem(400, f"webhook {hook.slug!r}: {exc}") from None
    fields: dict[str, Any] = {
        "source": f"flowbus/webhooks/{hook.slug}",
        "data": parsed,
        **rendered,
    }
    if fields.get("id") in (None, ""):
        # A signed delivery without a provider id is identified by what was signed, so a
        # redelivery (or a replay with the id header removed) is stored once.
        derived = content_id(hook.slug, body) if hook.verifier != Verifier.NONE else None
        fields["id"] = delivery_id(request.headers, parsed) or derived or str(uuid.uuid4())
    fields["id"] = str(fields["id"])
    fields.setdefault("time", datetime.now(UTC))
    if "datacontenttype" not in fields and fields.get("data") is not None:
        fields["datacontenttype"] = "application/json"
    try:
        return build_event(fields)
    except InvalidEvent as exc:
        raise Problem(
            400, f"webhook {hook.slug!r} made an invalid event: attribute {exc.attribute!r} "
            f"{exc.reason}", attribute=exc.attribute,
        ) from None


def slack_challenge(hook: StoredWebhook, headers: Mapping[str, str], body: bytes) -> str | None:
    """The challenge of Slack's URL verification (answered, not published), if this is one."""
    if hook.verifier != Verifier.SLACK or media_type(headers) != "application/json":
        return None
    try:
        payload = jsonlimits.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(payload, dict) and payload.get("type") == "url_verification":
        challenge = payload.get("challenge")
        return challenge if isinstance(challenge, str) else None
    return None


async def receive(request: web.Request) -> web.Response:
    """``/hooks/{slug}``: verify, map to a CloudEvent, store it; 202 with its id."""
    gateway = gateway_of(request)
    slug = request.match_info["slug"]
    missing = Problem(404, f"no webhook named {slug[:100]!r}")
    check_key(slug, "webhook")
    hook = await load(await gateway.kv(gateway.bus.layout.webhooks), slug)
    if hook is None or not hook.enabled:
        raise missing
    # Webhooks carry no API key: each one has a bucket of its own, with the same rate.
    gateway.auth.limit(f"webhook:{slug}", f"webhook {slug!r}")
    body = await request.read()
    try:
        await verify(gateway, hook, request.headers, body)
    except SignatureRejected as exc:
        gateway.metrics.webhook_signatures_failed.labels(hook.verifier.value).inc()
        raise Problem(401, f"webhook {slug!r}: {exc}") from None
    challenge = slack_challenge(hook, request.headers, body)
    if challenge is not None:
        return web.json_response({"challenge": challenge})
    if is_binary_mode(request.headers) or media_type(request.headers) in (
        STRUCTURED_CONTENT_TYPE, "application/cloudevents-batch+json"
    ):
        events, _ = decode_request(request.headers, body)
        if len(events) > 1:
            gateway.auth.limit(f"webhook:{slug}", f"webhook {slug!r}", cost=len(events) - 1)
    else:
        events = [await to_event(hook, request, body)]
    refuse_reserved(gateway, events)
    ids = await publish_events(gateway, events, "webhook")
    return web.json_response({"ids": ids}, status=202)
