"""Notification channels: defined once, named by ``send-notification`` actions.

Stored in ``flowbus-automation-state`` under ``channel.<name>``
(:mod:`events.automation_store`); delivered by the orchestrator
(``orchestrator/automations/notify.py``). Secrets (an email password, credential
headers, and Slack and Teams URLs, whose path is the provider's token) are stored
sealed (:mod:`events.sealed`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from events.automation_actions import NAME, check_url
from events.automations import InvalidAutomation, check_size, error_text
from events.sealed import (
    MAX_SEALED,
    SecretBox,
    SecretOpenError,
    SecretsKeyError,
    check_plain_length,
    is_sealed,
    open_value,
)


def check_secret_url(value: str) -> str:
    """A chat webhook URL: its path is the provider's token, so an error never quotes it.

    A sealed URL (as stored) is checked when it is opened, just before sending.
    """
    if is_sealed(value):
        if len(value) > MAX_SEALED:
            raise ValueError(f"a sealed URL is at most {MAX_SEALED} characters")
        return value
    try:
        return check_url(value)
    except ValueError:
        raise ValueError("the URL is not an http(s) URL of at most 2,048 characters "
                         "(not quoted: it carries the provider's token)") from None


class WebhookChannel(BaseModel):
    """POST ``{"subject", "body", "event"}`` as JSON to ``url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["webhook"] = "webhook"
    url: str = Field(description="http(s) URL")
    headers: dict[str, str] = Field(default_factory=dict, max_length=32, description="extra headers")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_url(value)


class SlackChannel(BaseModel):
    """A Slack incoming webhook (``{"text": ..., "blocks": [...]}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["slack"] = "slack"
    url: str = Field(description="the incoming-webhook URL (it carries Slack's token: stored sealed)")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_secret_url(value)


class TeamsChannel(BaseModel):
    """A Microsoft Teams webhook: a MessageCard or an Adaptive Card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["teams"] = "teams"
    url: str = Field(description="the Teams (or Workflows) webhook URL (it carries a token: stored sealed)")
    card: Literal["messagecard", "adaptive"] = Field(default="adaptive", description="card format")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_secret_url(value)


class EmailChannel(BaseModel):
    """Email over SMTP, with STARTTLS and login when configured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["email"] = "email"
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:-]+$", description="SMTP host")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS")
    tls_ca_file: str | None = Field(
        default=None, max_length=4096, description="CA bundle to verify the server (default: system CAs)"
    )
    username: str | None = Field(default=None, max_length=256, description="SMTP login")
    password: str | None = Field(default=None, max_length=MAX_SEALED,
                                 description="SMTP password, up to 1024 characters (stored sealed)")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=256, description="From address")
    to: list[str] = Field(min_length=1, max_length=100, description="recipient addresses")
    timeout_seconds: float = Field(default=15, gt=0, le=120, description="SMTP timeout")

    @field_validator("password")
    @classmethod
    def _password(cls, value: str | None) -> str | None:
        return check_plain_length(value, 0, 1024, "password")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", address) or len(address) > 256:
                raise ValueError(f"{address[:80]!r} is not an email address")
        return value


ChannelConfig = Annotated[
    Annotated[WebhookChannel, Tag("webhook")]
    | Annotated[SlackChannel, Tag("slack")]
    | Annotated[TeamsChannel, Tag("teams")]
    | Annotated[EmailChannel, Tag("email")],
    Discriminator(lambda v: v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)),
]


class Channel(BaseModel):
    """A named notification channel (key ``channel.<name>`` in ``flowbus-automation-state``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="what actions call it")
    config: ChannelConfig = Field(description="where and how to deliver")


def parse_channel(value: Any) -> Channel:
    """Validate a channel; :class:`InvalidAutomation` naming the field."""
    if not isinstance(value, dict):
        raise InvalidAutomation(f"a channel is an object, not {type(value).__name__}")
    check_size(value, "channel")
    kind = value.get("config", {}).get("kind") if isinstance(value.get("config"), dict) else None
    if kind not in ("webhook", "slack", "teams", "email"):
        raise InvalidAutomation(
            f"channel config.kind {kind!r} is unknown; use webhook, slack, teams or email"
        )
    try:
        return Channel.model_validate(value)
    except ValidationError as exc:
        raise InvalidAutomation(f"channel {error_text(exc)}") from None


def channel_target(channel: Channel, box: SecretBox | None) -> str:
    """Where a channel delivers, as listings show it: a Slack or Teams URL is a
    credential, so only its scheme and host (``(sealed)`` when no key opens it)."""
    config = channel.config
    if isinstance(config, EmailChannel):
        return f"smtp://{config.host}:{config.port}"
    if isinstance(config, WebhookChannel):
        return config.url
    try:
        url = open_value(config.url, box)
    except (SecretsKeyError, SecretOpenError):
        return "(sealed)"
    return redact_url(url)


def redact_url(url: str) -> str:
    """``scheme://host[:port]/...``: a URL whose path is a credential, as errors and
    listings show it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/..."


def channel_key(name: str) -> str:
    return f"channel.{name}"
