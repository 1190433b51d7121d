"""The one event model: CloudEvents 1.0, and its three encodings.

On NATS an event travels as CloudEvents JSON (structured mode). Over HTTP the
gateway also takes binary mode (``ce-*`` headers) and batches. Every decoder here
raises :class:`~events.errors.InvalidEvent` naming the attribute at fault, and
:func:`encode` refuses an event over the size limit, so nothing half-valid is
ever published.

>>> ev = CloudEvent.create("com.example.order.created", source="/shop", data={"id": 7})
>>> decode(encode(ev)) == ev
True
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from events import jsonlimits
from events.errors import EventTooLarge, InvalidEvent
from events.jsonlimits import JsonLimitExceeded
from events.messages import plain
from events.subjects import check_type

SPECVERSION: Literal["1.0"] = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

CONTEXT_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"}
)
_RESERVED = CONTEXT_ATTRIBUTES | {"data", "data_base64"}
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
MAX_ATTRIBUTE_LENGTH = 4096
# Printable ASCII except space, '"' and '%' stays as is in headers (HTTP binding 3.1.3.2).
_HEADER_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')

ExtensionValue = str | int | bool


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event. Identity is (``source``, ``id``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = Field(default=SPECVERSION, description="always '1.0'")
    id: str = Field(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH, description="unique per source")
    source: str = Field(
        min_length=1, max_length=MAX_ATTRIBUTE_LENGTH, description="URI-reference of the producer"
    )
    type: str = Field(description="dotted event name; becomes the NATS subject")
    time: datetime | None = Field(default=None, description="when it happened (RFC 3339)")
    subject: str | None = Field(
        default=None, max_length=MAX_ATTRIBUTE_LENGTH, description="the resource it is about"
    )
    datacontenttype: str | None = Field(default=None, description="media type of data")
    dataschema: str | None = Field(default=None, description="URI of data's schema")
    data: Any = Field(default=None, description="payload: JSON value, text or bytes")
    extensions: dict[str, ExtensionValue] = Field(
        default_factory=dict, description="extension attributes (lowercase a-z0-9, <= 20 chars)"
    )

    @field_validator("type")
    @classmethod
    def _type_is_subject(cls, value: str) -> str:
        try:
            return check_type(value)
        except InvalidEvent as exc:
            raise ValueError(exc.reason) from None

    @field_validator("time")
    @classmethod
    def _time_has_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset, e.g. 2024-05-01T12:00:00Z")
        return value

    @field_validator("extensions")
    @classmethod
    def _extension_names(cls, value: dict[str, ExtensionValue]) -> dict[str, ExtensionValue]:
        for name in value:
            if name in _RESERVED or _EXTENSION_NAME.fullmatch(name) is None:
                raise ValueError(
                    f"extension name {name!r} must be 1-20 lowercase letters or digits and "
                    "not a context attribute"
                )
        return value

    @classmethod
    def create(
        cls,
        type: str,
        *,
        source: str,
        data: Any = None,
        subject: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        datacontenttype: str | None = None,
        extensions: Mapping[str, ExtensionValue] | None = None,
        **more_extensions: ExtensionValue,
    ) -> CloudEvent:
        """Build a new event, filling ``id`` (a UUID) and ``time`` (now, UTC) if not given."""
        return build_event(
            {
                "type": type,
                "source": source,
                "data": data,
                "subject": subject,
                "id": id or str(uuid.uuid4()),
                "time": time or datetime.now(UTC),
                "datacontenttype": datacontenttype,
                "extensions": {**(extensions or {}), **more_extensions},
            }
        )

    @property
    def resource(self) -> str:
        """What the event is about: its ``subject``, else its ``source``."""
        return self.subject if self.subject is not None else self.source

    def attribute(self, name: str) -> Any:
        """A context or extension attribute by its CloudEvents name (None when absent)."""
        if name in CONTEXT_ATTRIBUTES:
            return getattr(self, name)
        return self.extensions.get(name)

    def is_json(self) -> bool:
        return is_json_content_type(self.datacontenttype)


def is_json_content_type(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def build_event(fields: Mapping[str, Any]) -> CloudEvent:
    """Validate ``fields`` into a :class:`CloudEvent`, turning pydantic's error into ours."""
    try:
        return CloudEvent.model_validate(fields)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidEvent:
    first = exc.errors(include_url=False)[0]
    loc = first.get("loc", ())
    attribute = str(loc[-1]) if loc and loc[0] == "extensions" and len(loc) > 1 else str(
        loc[0] if loc else "event"
    )
    message = plain(first)
    message = message.removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "is required"
    elif "input" in first and attribute not in ("type", "time"):
        shown = repr(first["input"])
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = f"{message} (got {shown})"
    return InvalidEvent(attribute, message)


# --- structured mode (JSON) ------------------------------------------------------------


# The last time formatted, and its text: ``isoformat`` costs more than the rest of an
# event's encoding, and the events of one request share the gateway's receive time.
# Kept by identity: equal times in two zones have two texts.
_last_time: tuple[datetime | None, str] = (None, "")


def _format_time(value: datetime) -> str:
    global _last_time
    if _last_time[0] is value:
        return _last_time[1]
    text = value.isoformat()
    text = text[:-6] + "Z" if text.endswith("+00:00") else text
    _last_time = (value, text)
    return text


# Built once: ``json.dumps`` with options builds an encoder per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def to_dict(event: CloudEvent) -> dict[str, Any]:
    """The CloudEvents JSON object of ``event`` (structured mode)."""
    out: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
    }
    if event.time is not None:
        out["time"] = _format_time(event.time)
    for name in ("subject", "datacontenttype", "dataschema"):
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    out.update(event.extensions)
    if isinstance(event.data, bytes | bytearray):
        out["data_base64"] = base64.b64encode(event.data).decode("ascii")
    elif event.data is not None:
        out["data"] = event.data
    return out


def encode(event: CloudEvent, max_bytes: int | None = None) -> bytes:
    """CloudEvents JSON bytes of ``event``; :class:`EventTooLarge` past ``max_bytes``."""
    try:
        body = _COMPACT.encode(to_dict(event)).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidEvent("data", f"is not JSON-serializable: {exc}") from None
    if max_bytes is not None and len(body) > max_bytes:
        raise EventTooLarge(len(body), max_bytes)
    return body


def from_dict(obj: object, *, received: datetime | None = None) -> CloudEvent:
    """Decode a CloudEvents JSON object, naming the attribute at fault when it is wrong.

    ``received`` (an aware time) becomes ``time`` when the event has none.
    """
    if type(obj) is dict:
        event = _plain_event(obj, received)
        if event is not None:
            return event
    return _validated_event(obj, received)


_PLAIN_KEYS = frozenset({"specversion", "id", "source", "type", "time", "subject",
                         "datacontenttype", "dataschema", "data"})
_EXTENSION_TYPES = (str, int, bool)
_new_event = CloudEvent.__new__
_set = object.__setattr__


def _plain_event(obj: dict[str, Any], received: datetime | None) -> CloudEvent | None:
    """``obj`` as an event without pydantic's validation, or None to take the validating path.

    Taken only when every attribute is of the exact type and within the limits the
    model asks for, so that :func:`_validated_event` would build the same event; all
    else (whatever is refused, ``data_base64``, a float extension) takes that path,
    so what is refused and how it is said do not change. It halves the cost of a
    decode; ``tests/events/test_cloudevent_paths.py`` holds both paths to the same
    result. The instance is set up as ``BaseModel.model_construct`` does it, which
    is slower than validating.
    """
    if obj.get("specversion") != SPECVERSION or type(obj["specversion"]) is not str:
        return None
    id_, source, kind = obj.get("id"), obj.get("source"), obj.get("type")
    if (type(id_) is not str or not 0 < len(id_) <= MAX_ATTRIBUTE_LENGTH
            or type(source) is not str or not 0 < len(source) <= MAX_ATTRIBUTE_LENGTH
            or type(kind) is not str or not _is_subject_type(kind)):
        return None
    subject = obj.get("subject")
    if subject is not None and (type(subject) is not str or len(subject) > MAX_ATTRIBUTE_LENGTH):
        return None
    content_type, schema = obj.get("datacontenttype"), obj.get("dataschema")
    if (content_type is not None and type(content_type) is not str) or (
            schema is not None and type(schema) is not str):
        return None
    when = obj.get("time")
    if when is not None:
        if type(when) is not str:
            return None
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
    extensions: dict[str, ExtensionValue] = {}
    for key, value in obj.items():
        if key in _PLAIN_KEYS:
            continue
        if type(value) not in _EXTENSION_TYPES or _EXTENSION_NAME.fullmatch(key) is None:
            return None  # data_base64 included
        extensions[key] = value
    fields_set = {"extensions", *_PLAIN_KEYS.intersection(obj)}
    if when is None and received is not None:
        when = received
        fields_set.add("time")
    event = _new_event(CloudEvent)
    _set(event, "__dict__", {
        "specversion": SPECVERSION, "id": id_, "source": source, "type": kind, "time": when,
        "subject": subject, "datacontenttype": content_type, "dataschema": schema,
        "data": obj.get("data"), "extensions": extensions,
    })
    _set(event, "__pydantic_fields_set__", fields_set)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


# Event types seen valid (a few names make up most traffic); forgotten when full.
_known_types: set[str] = set()


def _is_subject_type(kind: str) -> bool:
    if kind not in _known_types:
        try:
            check_type(kind)
        except InvalidEvent:
            return False
        if len(_known_types) >= 1024:
            _known_types.clear()
        _known_types.add(kind)
    return True


def _validated_event(obj: object, received: datetime | None) -> CloudEvent:
    if not isinstance(obj, dict):
        raise InvalidEvent("event", f"must be a JSON object, got {type(obj).__name__}")
    if "specversion" not in obj:
        raise InvalidEvent("specversion", "is required")
    if obj["specversion"] != SPECVERSION:
        raise InvalidEvent(
            "specversion", f"must be '1.0', got {obj['specversion']!r}; only CloudEvents 1.0 is accepted"
        )
    for name in ("id", "source", "type"):
        if name not in obj:
            raise InvalidEvent(name, "is required")
        if not isinstance(obj[name], str):
            raise InvalidEvent(name, f"must be a string, got {type(obj[name]).__name__}")
    fields: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    for key, value in obj.items():
        if key in CONTEXT_ATTRIBUTES:
            fields[key] = _parse_time(value) if key == "time" else value
        elif key == "data":
            fields["data"] = value
        elif key == "data_base64":
            fields["data"] = _b64(value)
        else:
            if _EXTENSION_NAME.fullmatch(key) is None:
                raise InvalidEvent(
                    key, "is not a CloudEvents attribute, and extension names must be 1-20 "
                    "lowercase letters or digits"
                )
            if isinstance(value, dict | list) or value is None:
                raise InvalidEvent(key, "an extension attribute must be a string, number or boolean")
            extensions[key] = value
    if "data" in obj and "data_base64" in obj:
        raise InvalidEvent("data_base64", "cannot be given together with data")
    fields["extensions"] = extensions
    if received is not None and fields.get("time") is None:
        fields["time"] = received
    return build_event(fields)


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise InvalidEvent("data_base64", "must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise InvalidEvent("data_base64", "is not valid base64") from None


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent("time", f"must be an RFC 3339 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("time", f"{value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidEvent("time", f"{value!r} has no time zone offset (add 'Z' for UTC)")
    return parsed


# The most events one batch request may carry (the OpenAPI document's maxItems).
BATCH_MAX_EVENTS = 100


def _loads(body: bytes | str, what: str) -> Any:
    try:
        return jsonlimits.loads(body)
    except JsonLimitExceeded as exc:
        raise InvalidEvent(what, f"is over a JSON limit: {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent(what, f"is not valid JSON: {exc}") from None


def decode(body: bytes | str, *, received: datetime | None = None) -> CloudEvent:
    """Decode structured-mode CloudEvents JSON (``received``: as in :func:`from_dict`)."""
    return from_dict(_loads(body, "event"), received=received)


def decode_batch(body: bytes | str, *, received: datetime | None = None) -> list[CloudEvent]:
    """Decode a batch (a JSON array of structured events). Any bad one rejects the batch.

    ``received``: as in :func:`from_dict`, for every event without a time.
    """
    raw = body.encode() if isinstance(body, str) else body
    # Every event names its specversion: far more mentions than allowed events is a
    # batch refused before it costs a parse (nested CloudEvents in data are allowed for).
    mentions = raw.count(b'"specversion"')
    if mentions > BATCH_MAX_EVENTS * 10:
        raise InvalidEvent(
            "batch", f"holds about {mentions} events, over the limit of {BATCH_MAX_EVENTS}; "
            "send it in several requests")
    items = _loads(body, "batch")
    if not isinstance(items, list):
        raise InvalidEvent("batch", "must be a JSON array of CloudEvents")
    if len(items) > BATCH_MAX_EVENTS:
        raise InvalidEvent(
            "batch", f"holds {len(items)} events, over the limit of {BATCH_MAX_EVENTS}; "
            "send it in several requests")
    events = []
    for index, item in enumerate(items):
        try:
            events.append(from_dict(item, received=received))
        except InvalidEvent as exc:
            raise InvalidEvent(f"[{index}].{exc.attribute}", exc.reason) from None
    return events


def encode_batch(events: list[CloudEvent]) -> bytes:
    return json.dumps([to_dict(e) for e in events], separators=(",", ":")).encode()


# --- HTTP binary mode ------------------------------------------------------------------


def to_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Headers (``ce-*`` and Content-Type) and body of ``event`` in HTTP binary mode."""
    attributes = to_dict(event)
    attributes.pop("data", None)
    attributes.pop("data_base64", None)
    content_type = attributes.pop("datacontenttype", None)
    headers = {f"ce-{k}": quote(str(v).lower() if isinstance(v, bool) else str(v), safe=_HEADER_SAFE)
               for k, v in attributes.items()}
    data = event.data
    if isinstance(data, bytes | bytearray):
        body = bytes(data)
    elif data is None:
        body = b""
    elif event.is_json():
        body = json.dumps(data, separators=(",", ":")).encode()
        content_type = content_type or "application/json"
    else:
        body = str(data).encode()
    if content_type:
        headers["content-type"] = content_type
    return headers, body


def from_binary(
    headers: Mapping[str, str], body: bytes, *, received: datetime | None = None
) -> CloudEvent:
    """Decode HTTP binary mode: attributes from ``ce-*`` headers, data from the body
    (``received``: as in :func:`from_dict`)."""
    obj: dict[str, Any] = {}
    content_type: str | None = None
    for raw_name, raw_value in headers.items():
        name = raw_name.lower()
        if name == "content-type":
            content_type = raw_value
        elif name.startswith("ce-"):
            obj[name[3:]] = unquote(raw_value)
    if "specversion" not in obj:
        raise InvalidEvent("specversion", "is required (header ce-specversion)")
    if content_type is not None:
        obj["datacontenttype"] = content_type
    if body:
        if is_json_content_type(content_type):
            obj["data"] = _loads(body, "data")
        elif content_type is not None and content_type.lower().startswith("text/"):
            try:
                obj["data"] = body.decode()
            except UnicodeDecodeError:
                raise InvalidEvent("data", "text body is not valid UTF-8") from None
        else:
            obj["data_base64"] = base64.b64encode(body).decode("ascii")
    return from_dict(obj, received=received)


def is_binary_mode(headers: Mapping[str, str]) -> bool:
    return any(k.lower() == "ce-specversion" for k in headers)
