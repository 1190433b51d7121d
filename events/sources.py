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
connector turned into ``ce-*`` headers) passes through unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from events import jsonlimits
from events.cloudevent import (
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    build_event,
    from_binary,
    from_dict,
    is_binary_mode,
    is_json_content_type,
)
from events.errors import FlowbusError, InvalidEvent
from events.templates import TemplateError, check_value, render_value

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


class MappingFailed(FlowbusError):
    """A message could not be turned into a CloudEvent; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


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


# --- messages and mapping --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message as a connector received it, broker differences already smoothed.

    ``headers`` hold the message's headers (NATS headers, MQTT v5 user properties, AMQP
    headers), with CloudEvents binary-mode attributes under ``ce-<name>`` whatever the
    binding spelled them. ``message_id`` is the publisher's own id, when it set one;
    ``position`` where the broker keeps the message (stream sequence, packet id).
    """

    body: bytes
    topic: str
    headers: Mapping[str, str] = field(default_factory=dict)
    message_id: str | None = None
    position: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


def event_id(message: SourceMessage) -> str:
    """The CloudEvent id of a message: its own id, else a hash of where it sits and what it says.

    Redelivery of the same message gives the same id, so the events stream stores it once.
    A message with neither (core NATS without ``Nats-Msg-Id``) cannot be redelivered and
    gets a random id.
    """
    if message.message_id:
        return message.message_id[:256]
    if message.position is None:
        return str(uuid.uuid4())
    digest = hashlib.blake2b(digest_size=16)
    for part in (message.topic.encode(), message.position.encode(), message.body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def message_key(message: SourceMessage) -> str:
    """A stable key for one message (dead letters): the same message gives the same key."""
    digest = hashlib.blake2b(digest_size=12)
    for part in (message.topic.encode(), (message.message_id or "").encode(),
                 (message.position or "").encode(), message.body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _content_type(message: SourceMessage) -> str | None:
    for name, value in message.headers.items():
        if name.lower() == "content-type":
            return value
    return None


def _parse_body(message: SourceMessage) -> tuple[Any, str | None, str | None]:
    """(body as JSON, text, or bytes when not UTF-8; text; content type).

    :class:`MappingFailed` when the content type says JSON and the body is not.
    """
    content_type = _content_type(message)
    try:
        text: str | None = message.body.decode()
    except UnicodeDecodeError:
        text = None
    declared_json = content_type is not None and is_json_content_type(content_type)
    if text is not None and (content_type is None or declared_json):
        try:
            return jsonlimits.loads(text), text, "application/json"
        except ValueError as exc:
            if declared_json:
                raise MappingFailed(
                    f"body is not valid JSON ({exc}) though its content type is {content_type}"
                ) from None
    if declared_json:
        raise MappingFailed(f"body is not UTF-8 text though its content type is {content_type}")
    if text is None:
        return message.body, None, content_type or "application/octet-stream"
    return (text if text else None), text, content_type or "text/plain"


def _as_cloudevent(message: SourceMessage) -> CloudEvent | None:
    """The message itself when it already is a CloudEvent (binary or structured mode)."""
    if is_binary_mode(message.headers):
        return from_binary(message.headers, message.body)
    content_type = (_content_type(message) or "").split(";", 1)[0].strip().lower()
    if content_type == STRUCTURED_CONTENT_TYPE:
        try:
            return from_dict(jsonlimits.loads(message.body))
        except ValueError as exc:
            raise InvalidEvent("event", f"is not valid JSON: {exc}") from None
    if message.body[:1] == b"{" and b'"specversion"' in message.body:
        try:
            obj = jsonlimits.loads(message.body)
        except ValueError:
            return None
        if isinstance(obj, dict) and "specversion" in obj:
            return from_dict(obj)
    return None


def to_event(spec: SourceSpec, message: SourceMessage, *, now: datetime | None = None) -> CloudEvent:
    """Turn ``message`` into a CloudEvent as ``spec`` says; :class:`MappingFailed` saying why not."""
    if spec.passthrough:
        try:
            passed = _as_cloudevent(message)
        except InvalidEvent as exc:
            raise MappingFailed(f"message looks like a CloudEvent but is not valid: {exc}") from None
        if passed is not None:
            return passed if passed.time is not None else passed.model_copy(
                update={"time": now or datetime.now(UTC)})
    body, text, content_type = _parse_body(message)
    context = {
        "body": body,
        "text": text,
        "headers": {k.lower(): v for k, v in message.headers.items()},
        "topic": message.topic,
        "id": message.message_id,
        "properties": dict(message.properties),
        "source": spec.name,
        "kind": spec.kind,
    }
    try:
        rendered = render_value(spec.mapping, context)
    except TemplateError as exc:
        raise MappingFailed(f"mapping failed: {exc}") from None
    fields: dict[str, Any] = {
        "source": spec.event_source,
        "data": body,
        "datacontenttype": content_type,
        **rendered,
    }
    if "data" in rendered and "datacontenttype" not in rendered:
        shaped = not isinstance(rendered["data"], str | bytes)
        fields["datacontenttype"] = "application/json" if shaped else content_type
    if fields.get("id") in (None, ""):
        fields["id"] = event_id(message)
    fields["id"] = str(fields["id"])
    fields.setdefault("time", now or datetime.now(UTC))
    if fields.get("data") is None:
        fields.pop("datacontenttype", None)
    try:
        return build_event(fields)
    except InvalidEvent as exc:
        raise MappingFailed(
            f"the mapping made an invalid event: attribute {exc.attribute!r} {exc.reason}"
        ) from None
