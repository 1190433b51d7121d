"""Delivery guarantees: dead letters, pause/resume, restart without loss, CloudEvents binding."""

from __future__ import annotations

import json
from pathlib import Path

import nats
from nats.js.client import JetStreamContext

from events.embedded import EmbeddedNats
from events.source_store import SourceStore

from .conftest import EventLog, spec, unique, wait_status, wait_until


async def _stream(js: JetStreamContext, prefix: str) -> str:
    name = unique(prefix)
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    return name


def js_source(name: str, url: str, stream: str, **more: object) -> dict[str, object]:
    return {"name": name, "kind": "nats-jetstream", "connection": {"url": url},
            "subscription": {"stream": stream},
            "mapping": {"type": "app.order", "data": {"n": "{{ body.n }}"}}, **more}


async def test_malformed_message_lands_in_dead_letters_with_reason_and_is_acked(
    other_nats: EmbeddedNats, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    nc = await nats.connect(other_nats.url)
    js = nc.jetstream()
    stream = await _stream(js, "DL")
    await js.publish(f"{stream}.x", b"this is not json", headers={"Content-Type": "application/json"})
    await js.publish(f"{stream}.x", json.dumps({"n": 1}).encode())
    await store.create(spec(**js_source("dl", other_nats.url, stream)))
    async with start_sources():
        await event_log.wait_for(1)
        letters = await wait_until(lambda: store.dead_letter_list("dl"), what="a dead letter")
        consumer = await js.consumer_info(stream, "flowbus-source-dl")
    [letter] = letters
    assert "not valid JSON" in letter.reason
    assert letter.message().body == b"this is not json"
    assert consumer.num_ack_pending == 0  # acked upstream: it does not loop
    assert [e.data for e in event_log.events] == [{"n": 1}]
    await nc.close()


async def test_dead_letter_redrive_after_fixing_the_mapping_and_purge(
    other_nats: EmbeddedNats, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    nc = await nats.connect(other_nats.url)
    js = nc.jetstream()
    stream = await _stream(js, "RD")
    await js.publish(f"{stream}.x", json.dumps({"count": 5}).encode())
    await js.publish(f"{stream}.x", json.dumps({"count": 6}).encode())
    await store.create(spec(**js_source("rd", other_nats.url, stream)))
    async with start_sources():
        letters = await wait_until(
            lambda: _at_least(store.dead_letter_list("rd"), 2), what="two dead letters")
    assert all("has no attribute 'n'" in d.reason for d in letters)
    fixed = spec(**{**js_source("rd", other_nats.url, stream),
                    "mapping": {"type": "app.order", "data": {"n": "{{ body.count }}"}}})
    await store.replace(fixed)
    report = await store.redrive("rd", keys=[letters[0].key])
    assert (report.redriven, report.failed) == (1, 0)
    assert [e.data for e in await event_log.wait_for(1)] == [{"n": 5}]
    assert await store.purge("rd") == 1
    assert await store.dead_letter_list("rd") == []
    await nc.close()


async def _at_least(coro, n):  # type: ignore[no-untyped-def]
    items = await coro
    return items if len(items) >= n else None


async def test_paused_source_stops_consuming_and_resumes_where_it_was(
    other_nats: EmbeddedNats, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    nc = await nats.connect(other_nats.url)
    js = nc.jetstream()
    stream = await _stream(js, "PS")
    await store.create(spec(**js_source("ps", other_nats.url, stream)))
    async with start_sources():
        await wait_status(store, "ps", "connected")
        for i in range(5):
            await js.publish(f"{stream}.x", json.dumps({"n": i}).encode())
        await event_log.wait_for(5)
        await store.set_paused("ps", True)
        await wait_status(store, "ps", "paused")
        for i in range(5, 10):
            await js.publish(f"{stream}.x", json.dumps({"n": i}).encode())
        consumer = await js.consumer_info(stream, "flowbus-source-ps")
        assert consumer.num_pending == 5  # nothing taken while paused
        assert len(await event_log.refresh()) == 5
        await store.set_paused("ps", False)
        events = await event_log.wait_for(10)
    assert sorted(e.data["n"] for e in events) == list(range(10))
    await nc.close()


async def test_nats_restart_mid_stream_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    server = EmbeddedNats(tmp_path / "app-nats").start()
    try:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        js = nc.jetstream()
        stream = await _stream(js, "RS")
        # Messages in flight when the server went away come back after ack_wait.
        definition = js_source("rs", server.url, stream)
        definition["subscription"] = {"stream": stream, "ack_wait_seconds": 1}
        await store.create(spec(**definition))
        async with start_sources():
            for i in range(200):
                await js.publish(f"{stream}.x", json.dumps({"n": i}).encode())
            server.stop()
            await wait_status(store, "rs", "error")
            server.start()
            await wait_until(lambda: _publishable(js, stream), what="NATS back")
            for i in range(200, 300):
                await js.publish(f"{stream}.x", json.dumps({"n": i}).encode())
            await event_log.wait_for(300, within=20)
        await nc.close()
    finally:
        server.stop()
    values = [e.data["n"] for e in await event_log.refresh()]
    assert sorted(values) == list(range(300))


async def _publishable(js: JetStreamContext, stream: str) -> bool:
    try:
        await js.stream_info(stream)
    except Exception:
        return False
    return True


async def test_cloudevents_nats_binding_binary_and_structured_pass_through(
    other_nats: EmbeddedNats, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    subject = unique("ce")
    await store.create(spec(name="ce", kind="nats", connection={"url": other_nats.url},
                            subscription={"subject": f"{subject}.>"}))
    async with start_sources():
        await wait_status(store, "ce", "connected")
        nc = await nats.connect(other_nats.url)
        await nc.publish(f"{subject}.bin", b'{"a": 1}', headers={
            "ce-specversion": "1.0", "ce-id": "bin-1", "ce-source": "/app",
            "ce-type": "com.example.binary", "content-type": "application/json"})
        structured = {"specversion": "1.0", "id": "st-1", "source": "/app",
                      "type": "com.example.structured", "data": {"b": 2}}
        await nc.publish(f"{subject}.st", json.dumps(structured).encode(),
                         headers={"content-type": "application/cloudevents+json"})
        await nc.flush()
        events = await event_log.wait_for(2)
        await nc.close()
    by_id = {e.id: e for e in events}
    assert by_id["bin-1"].type == "com.example.binary" and by_id["bin-1"].data == {"a": 1}
    assert by_id["bin-1"].source == "/app"
    assert by_id["st-1"].type == "com.example.structured" and by_id["st-1"].data == {"b": 2}


async def test_deleted_source_stops_and_its_status_goes(
    other_nats: EmbeddedNats, store: SourceStore, start_sources
) -> None:
    await store.create(spec(name="gone", kind="nats", connection={"url": other_nats.url},
                            subscription={"subject": "gone.>"}))
    async with start_sources():
        await wait_status(store, "gone", "connected")
        await store.delete("gone")
        assert await store.get("gone") is None
        await wait_until(lambda: _no_status(store, "gone"), what="status removed")


async def _no_status(store: SourceStore, name: str) -> bool:
    return await store.status(name) is None
