"""How a queue message becomes a CloudEvent, as a source's definition says.

A connector (NATS, MQTT, AMQP) smooths its broker's message into a
:class:`SourceMessage`; :func:`to_event` passes a message that already is a CloudEvent
through (when the source allows it) or renders the source's mapping over it. The
definitions themselves are :mod:`events.sources`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
from events.templates import TemplateError, render_value_async

if TYPE_CHECKING:
    from events.sources import SourceSpec


class MappingFailed(FlowbusError):
    """A message could not be turned into a CloudEvent; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


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


async def to_event(spec: SourceSpec, message: SourceMessage, *,
                   now: datetime | None = None) -> CloudEvent:
    """Turn ``message`` into a CloudEvent as ``spec`` says; :class:`MappingFailed` saying why not.

    The mapping's templates render off the event loop (:func:`~events.templates.render_value_async`):
    a template over its budget fails this one message, the loop keeps serving.
    """
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
        rendered = await render_value_async(spec.mapping, context)
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
