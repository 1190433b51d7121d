"""NATS sources: core subjects and JetStream streams of another application's server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from events.embedded import EmbeddedNats, find_nats_server, free_port
from events.source_store import SourceStore

from .brokers import wait_port
from .conftest import EventLog, spec, unique, wait_status, wait_until


def nats_source(name: str, url: str, **subscription: object) -> dict[str, object]:
    return {"name": name, "kind": "nats", "connection": {"url": url},
            "subscription": subscription}


async def test_core_nats_message_becomes_mapped_event(
    other_nats: EmbeddedNats, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    subject = unique("shop.")
    await store.create(spec(**nats_source("orders", other_nats.url, subject=f"{subject}.*"),
                            mapping={"type": "shop.order.created",
                                     "subject": "{{ topic }}",
                                     "data": {"order": "{{ body.id }}", "qty": "{{ body.qty }}"}}))
    async with start_sources():
        await wait_status(store, "orders", "connected")
        nc = await nats.connect(other_nats.url)
        await nc.publish(f"{subject}.eu", json.dumps({"id": "A-1", "qty": 3}).encode())
        await nc.flush()
        [event] = await event_log.wait_for(1)
        await nc.close()
    assert event.type == "shop.order.created"
    assert event.source == "flowbus/sources/orders"
    assert event.subject == f"{subject}.eu"
    assert event.data == {"order": "A-1", "qty": 3}


async def test_jetstream_source_acks_after_store_and_dedups_redelivery(
    other_nats: EmbeddedNats, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    stream = unique("APP")
    nc = await nats.connect(other_nats.url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    for i in range(20):
        await js.publish(f"{stream}.orders", json.dumps({"n": i}).encode())
    await store.create(spec(name="js", kind="nats-jetstream",
                            connection={"url": other_nats.url},
                            subscription={"stream": stream},
                            mapping={"type": "app.order", "data": "{{ body }}"}))
    async with start_sources():
        events = await event_log.wait_for(20)
        info = await wait_until(lambda: _settled(js, stream), what="all acked")
    assert sorted(e.data["n"] for e in events) == list(range(20))
    assert info.num_ack_pending == 0 and info.num_pending == 0
    await js.delete_stream(stream)
    await nc.close()


async def _settled(js, stream):  # type: ignore[no-untyped-def]
    info = await js.consumer_info(stream, "flowbus-source-js")
    return info if info.num_ack_pending == 0 and info.num_pending == 0 else None


@pytest.fixture
def locked_nats() -> Iterator[str]:
    """A nats-server that wants user 'app' with password 'right'."""
    port = free_port()
    proc = subprocess.Popen([find_nats_server(), "-a", "127.0.0.1", "-p", str(port),
                             "--user", "app", "--pass", "right"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, Path(os.devnull), 10)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


async def test_wrong_nats_credentials_give_a_clear_status_not_a_crash(
    locked_nats: str, store: SourceStore, start_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_SECRET_NATS_TEST", "wrong-password")
    await store.create(spec(name="locked", kind="nats",
                            connection={"url": locked_nats, "username": "app",
                                        "password": {"env": "SOURCE_SECRET_NATS_TEST"}},
                            subscription={"subject": "x.>"}))
    async with start_sources():
        # The server may close the socket before the client reads its refusal, so an
        # attempt can end as a connection reset; the next ones say what is wrong.
        first = await wait_until(lambda: _auth_status(store, "locked"),
                                 what="an 'authentication failed' status")
        assert first.reason is not None and first.reason.startswith("authentication failed")
        assert "wrong-password" not in first.reason
        assert first.retry_in_seconds is not None and first.retry_in_seconds > 0
        # It keeps retrying with backoff rather than giving up or spinning.
        later = await wait_until(lambda: _newer_status(store, "locked", first.updated),
                                 what="a later attempt")
        assert later.state == "error"


async def _auth_status(store: SourceStore, name: str):  # type: ignore[no-untyped-def]
    status = await store.status(name)
    auth = status is not None and (status.reason or "").startswith("authentication failed")
    return status if auth else None


async def _newer_status(store: SourceStore, name: str, than):  # type: ignore[no-untyped-def]
    status = await store.status(name)
    newer = status is not None and status.updated > than and status.state == "error"
    return status if newer else None


async def test_a_source_stopped_while_its_broker_never_answers_stops_at_once(
    store: SourceStore, start_sources, caplog: pytest.LogCaptureFixture
) -> None:
    # A server that accepts the connection and never says a word: the client waits for
    # its INFO line until the (long) connect timeout.
    peers: list[asyncio.StreamReader] = []
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(reader)
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await store.create(spec(name="mute", kind="nats",
                                connection={"url": f"nats://127.0.0.1:{port}",
                                            "connect_timeout": 120},
                                subscription={"subject": "x.>"}))
        with caplog.at_level(logging.WARNING, logger="flowbus.gateway.sources"):
            async with start_sources():
                await wait_status(store, "mute", "starting", within=30)
                await wait_until(lambda: _true(bool(peers)), within=30, what="a connection")
                await store.set_paused("mute", True)
                await wait_status(store, "mute", "paused", within=30)
                # The abandoned connection is closed, not left open until the timeout.
                assert await asyncio.wait_for(peers[0].read(), 30) == b""
        assert "did not stop within the drain timeout" not in caplog.text
    finally:
        for writer in writers:  # an unclosed one warns when collected, in a later test
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def _true(value: bool) -> bool:
    return value
