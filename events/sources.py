"""Event sources: definitions, and how a queue message becomes a CloudEvent.

A *source* subscribes to a queue another application publishes on (NATS core or
JetStream, MQTT, AMQP 0-9-1) and turns each message into a CloudEvent on the
events stream. Its definition is shared by the gateway (which runs it), the REST
API, the SDK and the CLI, so it lives here::

    spec = SourceSpec.model_validate({
        "name": "orders", "kind": "mqtt",
        "connection": {"url": "mqtt://broker:1883", "username": "flowbus",
                       "password": {"env": "SOURCE_SECRET_MQTT"}},
        "subscription": {"topics": ["shop/+/orders"], "qos": 1},
        "mapping": {"type": "shop.order.created", "data": "{{ body }}"},
    })

Secrets are references (an environment variable or a file name in the gateway's
secrets directory), never values, so nothing can echo them back. The mapping is
the sandboxed template language of webhooks (:mod:`events.templates`); a message
that already is a CloudEvent (structured JSON, or binary mode whose attributes the
connector turned into ``ce-*`` headers) passes through unchanged. How a message
becomes an event is :mod:`events.source_messages`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from events.templates import TemplateError, check_value

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
SourceKind = Literal["nats", "nats-jetstream", "mqtt", "amqp"]
KINDS: tuple[str, ...] = ("nats", "nats-jetstream", "mqtt", "amqp")
_SCHEMES: dict[str, frozenset[str]] = {
    "nats": frozenset({"nats", "tls"}),
    "nats-jetstream": frozenset({"nats", "tls"}),
    "mqtt": frozenset({"mqtt", "mqtts"}),
    "amqp": frozenset({"amqp", "amqps"}),
}
_TEMPLATE_KEYS = frozenset(
    {"type", "source", "subject", "id", "data", "datacontenttype", "dataschema", "extensions"}
)
_NATS_TOKEN = re.compile(r"[^\s.*>]+")
_NAME = r"^[A-Za-z0-9_-]{1,128}$"
MAX_MQTT_TOPICS = 32


# --- definitions -----------------------------------------------------------------------


class SecretRef(BaseModel):
    """Where the gateway finds a secret: an environment variable or a file, never the value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="name of an environment variable of the gateway holding the secret",
    )
    file: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$",
        description="name of a file in the gateway's secrets directory holding the secret",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'file' (a file name)")
        return self


def _no_inline_secret(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(
            "must be a reference like {'env': 'SOURCE_SECRET_X'} or {'file': 'name'}, "
            "never the secret itself"
        )
    return value


class Connection(BaseModel):
    """How to reach the broker: its URL and credentials (secrets by reference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        min_length=1, max_length=1000,
        description="broker URL: nats:// or tls://, mqtt:// or mqtts://, amqp:// or amqps://; "
        "credentials go in username/password, not in the URL",
    )
    username: str | None = Field(default=None, min_length=1, max_length=256,
                                 description="user name")
    password: SecretRef | None = Field(default=None, description="password, by reference")
    token: SecretRef | None = Field(default=None, description="NATS token, by reference")
    client_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="MQTT client id (default flowbus-<source>); keeps the broker session",
    )
    connect_timeout: float = Field(default=5.0, gt=0, le=120,
                                   description="seconds a connection attempt may take")

    @field_validator("password", "token", mode="before")
    @classmethod
    def _by_reference(cls, value: object) -> object:
        return _no_inline_secret(value)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if any(c.isspace() for c in value):
            raise ValueError("must not contain whitespace")
        parts = urlsplit(value)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"{value[:100]!r} is not a URL like nats://host:4222")
        if parts.password is not None or parts.username is not None:
            raise ValueError(
                "must not carry credentials; use connection.username and connection.password "
                "(a secret reference)"
            )
        try:
            parts.port  # noqa: B018 - raises on an out-of-range port
        except ValueError as exc:
            raise ValueError(f"bad port in {value[:100]!r}: {exc}") from None
        return value

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def port(self, default: int) -> int:
        return urlsplit(self.url).port or default


def check_nats_subject(value: str, *, wildcards: bool = True) -> str:
    """A NATS subject (or filter with ``*`` and a final ``>``); ValueError saying what is wrong."""
    if len(value) > 1024:
        raise ValueError("is longer than 1024 characters")
    tokens = value.split(".")
    for i, token in enumerate(tokens):
        if wildcards and token == "*":
            continue
        if wildcards and token == ">" and i == len(tokens) - 1:
            continue
        if not _NATS_TOKEN.fullmatch(token):
            raise ValueError(
                f"{value[:100]!r} is not a NATS subject: token {i + 1} {token!r} is empty, has "
                "whitespace, or misuses a wildcard ('*' is a whole token, '>' only the last)"
            )
    return value


def check_mqtt_filter(value: str) -> str:
    """An MQTT topic filter, ``$share/<group>/<filter>`` allowed; ValueError if malformed."""
    if not value or len(value) > 1024 or "\x00" in value:
        raise ValueError("an MQTT topic filter is 1-1024 characters without NUL")
    topic = value
    if value.startswith("$share/"):
        parts = value.split("/", 2)
        if len(parts) < 3 or not parts[1] or any(c in parts[1] for c in "+#") or not parts[2]:
            raise ValueError(f"{value[:100]!r}: a shared subscription is $share/<group>/<filter>")
        topic = parts[2]
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"{value[:100]!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"{value[:100]!r}: '+' must be a whole level")
    return value


class NatsSubscription(BaseModel):
    """Core NATS: a subject (wildcards allowed) in a queue group shared by the gateways."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["nats"] = Field(default="nats", exclude=True, description="the source's kind")
    subject: str = Field(description="subject to subscribe to; '*' and '>' wildcards allowed")
    queue_group: str | None = Field(
        default=None, pattern=_NAME,
        description="queue group (default flowbus-source-<name>): each message to one gateway",
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return check_nats_subject(value)


class JetStreamSubscription(BaseModel):
    """A JetStream stream of another application, read by a durable pull consumer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["nats-jetstream"] = Field(default="nats-jetstream", exclude=True,
                                            description="the source's kind")
    stream: str = Field(pattern=_NAME, description="the stream to read")
    subject: str | None = Field(default=None, description="filter subject within the stream")
    durable: str | None = Field(default=None, pattern=_NAME,
                                description="durable consumer name (default flowbus-source-<name>)")
    deliver: Literal["all", "new"] = Field(
        default="all", description="where a new consumer starts: the whole stream, or new messages"
    )
    ack_wait_seconds: float = Field(default=30.0, gt=0, le=3600,
                                    description="seconds before an unacknowledged message returns")

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        return None if value is None else check_nats_subject(value)


class MqttSubscription(BaseModel):
    """MQTT topic filters (``+``/``#``, shared ``$share/group/filter``), QoS 0 or 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mqtt"] = Field(default="mqtt", exclude=True, description="the source's kind")
    topics: list[str] = Field(min_length=1, max_length=MAX_MQTT_TOPICS,
                              description="topic filters; $share/<group>/<filter> shares the load")
    qos: Literal[0, 1] = Field(default=1, description="0: at most once; 1: at least once")
    protocol: Literal["3.1.1", "5"] = Field(default="5", description="MQTT protocol version")

    @field_validator("topics")
    @classmethod
    def _filters(cls, value: list[str]) -> list[str]:
        for topic in value:
            check_mqtt_filter(topic)
        return value

    @property
    def shared(self) -> bool:
        return all(t.startswith("$share/") for t in self.topics)


class AmqpSubscription(BaseModel):
    """AMQP 0-9-1: a queue, or an exchange and a binding key (a queue is then declared)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["amqp"] = Field(default="amqp", exclude=True, description="the source's kind")
    queue: str | None = Field(default=None, min_length=1, max_length=255,
                              pattern=r"^[A-Za-z0-9_.:-]+$", description="queue to consume")
    exchange: str | None = Field(default=None, min_length=1, max_length=255,
                                 pattern=r"^[A-Za-z0-9_.:-]+$",
                                 description="exchange to bind a queue to")
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = Field(
        default="topic", description="type of the exchange, when flowbus declares it"
    )
    binding_key: str = Field(default="#", max_length=255, description="binding (routing) key")
    declare: bool = Field(default=True,
                          description="declare the queue (and exchange) if missing, durable")
    prefetch: int = Field(default=100, ge=1, le=10_000,
                          description="unacknowledged messages the broker may send at once")

    @model_validator(mode="after")
    def _queue_or_exchange(self) -> AmqpSubscription:
        if self.queue is None and self.exchange is None:
            raise ValueError("give 'queue', or 'exchange' (and 'binding_key'), or both")
        return self


Subscription = Annotated[
    NatsSubscription | JetStreamSubscription | MqttSubscription | AmqpSubscription,
    Field(discriminator="kind"),
]


def _default_mapping() -> dict[str, Any]:
    return {"type": "source.{{ source }}", "data": "{{ body }}"}


class SourceSpec(BaseModel):
    """A source as a user writes it (YAML file, API body)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SOURCE_NAME_PATTERN, description="unique name, [a-z0-9-]")
    kind: SourceKind = Field(description="nats, nats-jetstream, mqtt or amqp")
    description: str = Field(default="", max_length=1000, description="what the source is for")
    connection: Connection = Field(description="how to reach the broker")
    subscription: Subscription = Field(description="what to subscribe to (depends on kind)")
    mapping: dict[str, Any] = Field(
        default_factory=_default_mapping,
        description="CloudEvent attributes as templates over body, text, headers, topic, id, "
        "properties, source and kind; 'type' is required",
    )
    passthrough: bool = Field(default=True,
                              description="messages that already are CloudEvents pass unchanged")
    paused: bool = Field(default=False, description="a paused source consumes nothing")

    @model_validator(mode="before")
    @classmethod
    def _subscription_kind(cls, data: Any) -> Any:
        # The subscription's shape follows the source's kind.
        if isinstance(data, dict) and isinstance(data.get("subscription"), dict):
            data = {**data, "subscription": {**data["subscription"], "kind": data.get("kind")}}
        return data

    @field_validator("mapping")
    @classmethod
    def _mapping_is_event(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - _TEMPLATE_KEYS)
        if unknown:
            raise ValueError(f"unknown CloudEvent attribute(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(_TEMPLATE_KEYS))}")
        if not isinstance(value.get("type"), str) or not value["type"]:
            raise ValueError("'type' is required and must be a string (a template is allowed)")
        if "extensions" in value and not isinstance(value["extensions"], dict):
            raise ValueError("'extensions' must be an object")
        if len(json.dumps(value, default=str)) > 64 * 1024:
            raise ValueError("is over 64 KiB")
        try:
            check_value(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("connection")
    @classmethod
    def _connection_fits_kind(cls, value: Connection, info: ValidationInfo) -> Connection:
        kind = info.data.get("kind")
        if kind is None:
            return value
        schemes = _SCHEMES[kind]
        if value.scheme not in schemes:
            raise ValueError(f"url: a {kind} source needs a "
                             f"{' or '.join(sorted(s + '://' for s in schemes))} URL, "
                             f"got {value.scheme}://")
        if value.token is not None and kind not in ("nats", "nats-jetstream"):
            raise ValueError("token: only NATS sources take a token")
        return value

    @property
    def event_source(self) -> str:
        """The CloudEvent ``source`` of mapped events (unless the mapping sets one)."""
        return f"flowbus/sources/{self.name}"


class Source(SourceSpec):
    """A stored source definition."""

    created: datetime = Field(description="when it was created")
    updated: datetime = Field(description="when it last changed")


class SourceState(BaseModel):
    """What a source is doing, as the gateway running it last said."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["starting", "connected", "error", "paused", "stopped"] = Field(
        description="starting, connected, error (see reason), paused or stopped"
    )
    reason: str | None = Field(default=None, description="why, when in error")
    gateway: str | None = Field(default=None, description="the gateway that reported it")
    updated: datetime = Field(description="when it was reported")
    retry_in_seconds: float | None = Field(default=None,
                                           description="when the next connection attempt is")
