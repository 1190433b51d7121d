"""The CloudEvent model: encodings, interop with the official SDK, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from events.cloudevent import (
    CloudEvent,
    decode,
    decode_batch,
    encode,
    encode_batch,
    from_binary,
    from_dict,
    to_binary,
    to_dict,
)
from events.errors import EventTooLarge, InvalidEvent

FMT = JSONFormat()


def sdk_event(data: object = None, **attributes: object) -> SdkEvent:
    base = {"id": "e-1", "source": "/sensors/7", "type": "com.example.reading",
            "specversion": "1.0"}
    base.update(attributes)
    return SdkEvent(base, data)  # type: ignore[arg-type]


def test_create_fills_id_and_time() -> None:
    ev = CloudEvent.create("com.example.a", source="/x")
    assert ev.id and ev.time is not None and ev.time.tzinfo is not None


def test_structured_round_trip_keeps_everything() -> None:
    ev = CloudEvent.create(
        "com.example.order.created", source="/shop", subject="order/7",
        data={"total": 12.5, "items": [1, 2]}, region="eu", priority=3,
    )
    back = decode(encode(ev))
    assert back == ev
    assert back.extensions == {"region": "eu", "priority": 3}
    assert back.resource == "order/7"


def test_bytes_data_travels_as_base64() -> None:
    ev = CloudEvent.create("com.example.blob", source="/x", data=b"\x00\xff",
                           datacontenttype="application/octet-stream")
    as_dict = to_dict(ev)
    assert "data" not in as_dict and as_dict["data_base64"] == "AP8="
    assert decode(encode(ev)).data == b"\x00\xff"


def test_official_sdk_structured_decodes_with_ours() -> None:
    sdk = sdk_event({"celsius": 21}, subject="room-1", time=datetime(2024, 5, 1, 12, tzinfo=UTC),
                    myext="abc")
    message = ce_http.to_structured(sdk, FMT)
    ev = decode(message.body)
    assert (ev.id, ev.source, ev.type, ev.subject) == ("e-1", "/sensors/7", "com.example.reading",
                                                       "room-1")
    assert ev.data == {"celsius": 21}
    assert ev.extensions == {"myext": "abc"}
    assert ev.time == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_official_sdk_binary_decodes_with_ours() -> None:
    sdk = sdk_event({"celsius": 21}, datacontenttype="application/json", myext="a b%c")
    message = ce_http.to_binary(sdk, FMT)
    ev = from_binary(message.headers, message.body)
    assert ev.data == {"celsius": 21}
    assert ev.extensions["myext"] == "a b%c"


def test_official_sdk_binary_bytes_decodes_with_ours() -> None:
    sdk = sdk_event(b"\x01\x02", datacontenttype="application/octet-stream")
    message = ce_http.to_binary(sdk, FMT)
    assert from_binary(message.headers, message.body).data == b"\x01\x02"


def test_ours_decodes_with_official_sdk_both_modes() -> None:
    ev = CloudEvent.create("com.example.reading", source="/s", subject="r",
                           data={"x": [1, 2]}, tenant="acme")
    structured = ce_http.HTTPMessage({"content-type": "application/cloudevents+json"}, encode(ev))
    headers, body = to_binary(ev)
    for message in (structured, ce_http.HTTPMessage(headers, body)):
        sdk = ce_http.from_http(message, FMT)
        assert sdk.get_id() == ev.id
        assert sdk.get_type() == ev.type
        assert sdk.get_subject() == "r"
        assert sdk.get_extension("tenant") == "acme"
        assert sdk.get_data() == {"x": [1, 2]}


def test_batch_round_trip() -> None:
    events = [CloudEvent.create("com.example.n", source="/b", data=i) for i in range(3)]
    assert decode_batch(encode_batch(events)) == events


@pytest.mark.parametrize(
    ("obj", "attribute", "fragment"),
    [
        ({"id": "1", "source": "/s", "type": "a.b"}, "specversion", "required"),
        ({"specversion": "0.3", "id": "1", "source": "/s", "type": "a.b"}, "specversion", "1.0"),
        ({"specversion": "1.0", "source": "/s", "type": "a.b"}, "id", "required"),
        ({"specversion": "1.0", "id": "1", "type": "a.b"}, "source", "required"),
        ({"specversion": "1.0", "id": "1", "source": "/s"}, "type", "required"),
        ({"specversion": "1.0", "id": "", "source": "/s", "type": "a.b"}, "id", "at least 1"),
        ({"specversion": "1.0", "id": 5, "source": "/s", "type": "a.b"}, "id", "string"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a b"}, "type", "not a valid"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a.>"}, "type", "not a valid"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a..b"}, "type", "not a valid"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a.*"}, "type", "not a valid"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": ""}, "type", "empty"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a", "time": "yesterday"},
         "time", "RFC 3339"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a",
          "time": "2024-01-01T00:00:00"}, "time", "time zone"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a", "Bad-Ext": "x"},
         "Bad-Ext", "lowercase"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a", "ext": {"n": 1}},
         "ext", "string, number or boolean"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "a", "data_base64": "!!"},
         "data_base64", "base64"),
        ([1, 2], "event", "JSON object"),
    ],
)
def test_malformed_event_names_the_attribute(obj: object, attribute: str, fragment: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        from_dict(obj)
    assert info.value.attribute == attribute
    assert fragment in str(info.value)


def test_invalid_json_is_named() -> None:
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        decode(b"{not json")


def test_bad_event_in_batch_names_its_index() -> None:
    good = to_dict(CloudEvent.create("a.b", source="/s"))
    with pytest.raises(InvalidEvent) as info:
        decode_batch(json.dumps([good, {**good, "type": "bad type"}]))
    assert info.value.attribute == "[1].type"


def test_batch_must_be_an_array() -> None:
    with pytest.raises(InvalidEvent, match="JSON array"):
        decode_batch(b'{"specversion": "1.0"}')


def test_oversized_event_is_refused_with_sizes() -> None:
    ev = CloudEvent.create("a.b", source="/s", data="x" * 2000)
    with pytest.raises(EventTooLarge) as info:
        encode(ev, max_bytes=1000)
    assert info.value.limit == 1000 and info.value.size > 2000


def test_binary_mode_needs_specversion_header() -> None:
    with pytest.raises(InvalidEvent, match="ce-specversion"):
        from_binary({"ce-id": "1", "ce-source": "/s", "ce-type": "a"}, b"")


def test_binary_mode_with_invalid_json_body() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "a",
               "content-type": "application/json"}
    with pytest.raises(InvalidEvent) as info:
        from_binary(headers, b"{oops")
    assert info.value.attribute == "data"


def test_binary_text_body_is_text() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "a",
               "content-type": "text/plain; charset=utf-8"}
    assert from_binary(headers, "héllo".encode()).data == "héllo"
