"""POST /events with the official CloudEvents SDK and hostile input, over real HTTP and NATS."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from gateway_helpers import ADMIN_KEY, problem, stored_events

from events.bus import Bus

BATCH = "application/cloudevents-batch+json"


def sdk_event(i: int = 0, **attributes: Any) -> SdkEvent:
    base = {"type": "com.example.order.created", "source": "/shop", "id": f"order-{i}",
            "specversion": "1.0"}
    return SdkEvent(attributes={**base, **attributes}, data={"order": i})


async def post(client: aiohttp.ClientSession, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
    # skip_auto_headers: aiohttp would add Content-Type application/octet-stream otherwise.
    async with client.post("/events", headers=headers, data=io.BytesIO(body),
                           skip_auto_headers=["Content-Type"]) as r:
        return r.status, await r.json(content_type=None)


async def test_structured_event_from_the_sdk_is_stored_before_202(client: aiohttp.ClientSession, bus: Bus) -> None:
    message = to_structured(sdk_event(1), JSONFormat())
    status, body = await post(client, dict(message.headers), message.body)
    assert (status, body) == (202, {"ids": ["order-1"]})
    [event] = await stored_events(bus)
    assert (event.type, event.source, event.data) == ("com.example.order.created", "/shop", {"order": 1})


async def test_binary_event_from_the_sdk_is_stored(client: aiohttp.ClientSession, bus: Bus) -> None:
    message = to_binary(sdk_event(2, subject="orders/2"), JSONFormat())
    status, body = await post(client, dict(message.headers), message.body)
    assert (status, body) == (202, {"ids": ["order-2"]})
    [event] = await stored_events(bus)
    assert event.subject == "orders/2" and event.data == {"order": 2}


async def test_binary_event_with_a_text_body_keeps_its_content_type(client: aiohttp.ClientSession, bus: Bus) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "t1", "ce-source": "/s", "ce-type": "a.text",
               "content-type": "text/plain"}
    status, _ = await post(client, headers, b"hello")
    assert status == 202
    [event] = await stored_events(bus)
    assert (event.data, event.datacontenttype) == ("hello", "text/plain")


async def test_binary_event_with_an_opaque_body_keeps_the_bytes(client: aiohttp.ClientSession, bus: Bus) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/s", "ce-type": "a.blob",
               "content-type": "application/octet-stream"}
    status, _ = await post(client, headers, b"\x00\xffraw")
    assert status == 202
    [event] = await stored_events(bus)
    assert event.data == b"\x00\xffraw"


async def test_missing_time_is_filled_in(client: aiohttp.ClientSession, bus: Bus) -> None:
    body = json.dumps({"specversion": "1.0", "id": "x", "source": "/s", "type": "a.b"}).encode()
    status, _ = await post(client, {"Content-Type": "application/cloudevents+json"}, body)
    assert status == 202
    [event] = await stored_events(bus)
    assert event.time is not None and event.time.tzinfo is not None


async def test_retried_request_with_same_source_and_id_is_stored_once(client: aiohttp.ClientSession, bus: Bus) -> None:
    message = to_structured(sdk_event(3), JSONFormat())
    for _ in range(3):
        status, body = await post(client, dict(message.headers), message.body)
        assert (status, body) == (202, {"ids": ["order-3"]})
    assert len(await stored_events(bus)) == 1


async def test_batch_is_stored_whole_in_order(client: aiohttp.ClientSession, bus: Bus) -> None:
    events = [json.loads(to_structured(sdk_event(i), JSONFormat()).body) for i in range(50)]
    status, body = await post(client, {"Content-Type": BATCH}, json.dumps(events).encode())
    assert status == 202 and body["ids"] == [f"order-{i}" for i in range(50)]
    assert [e.id for e in await stored_events(bus)] == [f"order-{i}" for i in range(50)]


async def test_batch_with_one_bad_event_is_rejected_whole_naming_its_index(client: aiohttp.ClientSession, bus: Bus) -> None:
    events: list[Any] = [json.loads(to_structured(sdk_event(i), JSONFormat()).body) for i in range(3)]
    del events[1]["source"]
    status, body = await post(client, {"Content-Type": BATCH}, json.dumps(events).encode())
    assert status == 400 and body["attribute"] == "[1].source"
    assert "[1].source" in problem(body)
    assert await stored_events(bus) == []


async def test_empty_batch_is_refused(client: aiohttp.ClientSession) -> None:
    status, body = await post(client, {"Content-Type": BATCH}, b"[]")
    assert status == 400 and "empty" in problem(body)


async def test_malformed_json_is_400_saying_so(client: aiohttp.ClientSession) -> None:
    status, body = await post(client, {"Content-Type": "application/cloudevents+json"}, b"{nope")
    assert status == 400 and "not valid JSON" in problem(body)


async def test_missing_attribute_is_named(client: aiohttp.ClientSession) -> None:
    body = json.dumps({"specversion": "1.0", "source": "/s", "type": "a.b"}).encode()
    status, answer = await post(client, {"Content-Type": "application/cloudevents+json"}, body)
    assert status == 400 and answer["attribute"] == "id"


async def test_type_that_cannot_be_a_subject_is_refused(client: aiohttp.ClientSession) -> None:
    body = json.dumps({"specversion": "1.0", "id": "1", "source": "/s", "type": "a.>.b"}).encode()
    status, answer = await post(client, {"Content-Type": "application/cloudevents+json"}, body)
    assert status == 400 and answer["attribute"] == "type"


async def test_wrong_specversion_is_refused(client: aiohttp.ClientSession) -> None:
    body = json.dumps({"specversion": "0.3", "id": "1", "source": "/s", "type": "a.b"}).encode()
    status, answer = await post(client, {"Content-Type": "application/cloudevents+json"}, body)
    assert status == 400 and answer["attribute"] == "specversion"


async def test_plain_json_without_ce_headers_is_415(client: aiohttp.ClientSession) -> None:
    status, body = await post(client, {"Content-Type": "application/json"}, b"{}")
    assert status == 415 and "application/cloudevents+json" in problem(body)


async def test_event_over_the_per_event_limit_is_413(client: aiohttp.ClientSession, bus: Bus) -> None:
    big = {"specversion": "1.0", "id": "big", "source": "/s", "type": "a.b", "data": "x" * (1024 * 1024)}
    status, body = await post(client, {"Content-Type": "application/cloudevents+json"},
                              json.dumps(big).encode())
    assert status == 413 and "per-event limit" in problem(body)
    assert await stored_events(bus) == []


async def test_batch_with_an_oversized_event_names_its_index(start_gateway: object) -> None:
    async with start_gateway(event_max_bytes=1000) as gw, aiohttp.ClientSession(  # type: ignore[operator]
        base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as s:
        events = [{"specversion": "1.0", "id": str(i), "source": "/s", "type": "a.b",
                   "data": "x" * (10 if i != 2 else 2000)} for i in range(4)]
        status, body = await post(s, {"Content-Type": BATCH}, json.dumps(events).encode())
    assert status == 413 and body["index"] == 2 and "FLOWBUS_GATEWAY_EVENT_MAX_BYTES" in problem(body)


async def test_request_over_the_per_request_limit_is_413(client: aiohttp.ClientSession) -> None:
    status, body = await post(client, {"Content-Type": BATCH}, b"[" + b" " * (11 * 1024 * 1024) + b"]")
    assert status == 413 and "FLOWBUS_GATEWAY_REQUEST_MAX_BYTES" in problem(body)


async def test_get_on_events_is_405_with_allow(client: aiohttp.ClientSession) -> None:
    async with client.get("/events") as r:
        assert r.status == 405 and "POST" in r.headers["Allow"]
        assert r.content_type == "application/problem+json"


async def test_unknown_path_is_404_problem(client: aiohttp.ClientSession) -> None:
    async with client.get("/nope") as r:
        assert r.status == 404 and problem(await r.json(content_type=None))


async def test_webhook_handshake_echoes_the_origin(client: aiohttp.ClientSession) -> None:
    async with client.options("/events", headers={"WebHook-Request-Origin": "eventemitter.example.com"}) as r:
        assert r.status == 200
        assert r.headers["WebHook-Allowed-Origin"] in ("*", "eventemitter.example.com")
        assert "POST" in r.headers["Allow"]


async def test_webhook_handshake_refuses_an_origin_not_allowed(start_gateway: Any) -> None:
    async with start_gateway(webhook_allowed_origins="a.example", webhook_allowed_rate=60) as gw:
        async with aiohttp.ClientSession(base_url=gw.url) as s:
            async with s.options("/events", headers={"WebHook-Request-Origin": "a.example"}) as r:
                assert r.status == 200 and r.headers["WebHook-Allowed-Origin"] == "a.example"
                assert r.headers["WebHook-Allowed-Rate"] == "60"
            async with s.options("/events", headers={"WebHook-Request-Origin": "evil.example"}) as r:
                assert r.status == 403
