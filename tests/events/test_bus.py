"""The bus against a real nats-server: publish, dedup, consume, KV, objects, layout."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from events.bus import Bus, Delivery
from events.cloudevent import CloudEvent
from events.embedded import EmbeddedNats
from events.errors import (
    AlreadyExists,
    BusUnavailable,
    EventTooLarge,
    InvalidEvent,
    LayoutConflict,
    NotFound,
    UpdateConflict,
)
from events.layout import Layout
from events.settings import NatsSettings
from tests.fetching import fetch_n, fetch_stored


def event(i: int = 0, type_: str = "com.example.thing", data: object = None) -> CloudEvent:
    return CloudEvent.create(type_, source="/tests", data={"i": i} if data is None else data)


async def test_publish_is_stored_on_the_type_subject(bus: Bus) -> None:
    ack = await bus.publish(event(1))
    assert ack.stream == bus.layout.events_stream and ack.seq == 1 and not ack.duplicate
    consumer = await bus.consumer("reader", filter_subjects=[f"{bus.layout.events_prefix}.com.>"])
    [delivery] = await consumer.fetch(10, max_wait=1)
    assert delivery.subject == f"{bus.layout.events_prefix}.com.example.thing"
    assert delivery.event.data == {"i": 1}


async def test_same_source_and_id_is_stored_once(bus: Bus) -> None:
    first = CloudEvent.create("a.b", source="/s", id="same")
    again = CloudEvent.create("a.b", source="/s", id="same", data="changed")
    other_source = CloudEvent.create("a.b", source="/t", id="same")
    acks = [await bus.publish(e) for e in (first, again, other_source)]
    assert [a.duplicate for a in acks] == [False, True, False]
    assert acks[1].seq == acks[0].seq


async def test_publish_many_pipelines_and_keeps_order(bus: Bus) -> None:
    events = [event(i) for i in range(1500)]
    acks = await bus.publish_many(events)
    assert [a.seq for a in acks] == list(range(1, 1501))


async def test_a_bad_event_in_a_batch_publishes_none(bus: Bus) -> None:
    events = [event(0), event(1, data="x" * (bus.settings.event_max_bytes + 1))]
    with pytest.raises(EventTooLarge):
        await bus.publish_many(events)
    consumer = await bus.consumer("reader")
    assert await consumer.fetch(10, max_wait=0.3) == []


async def test_unserializable_data_is_refused_before_publishing(bus: Bus) -> None:
    with pytest.raises(InvalidEvent, match="not JSON-serializable"):
        await bus.publish(event(0, data={"when": object()}))


async def test_fetch_takes_only_as_many_as_asked(bus: Bus) -> None:
    await bus.publish_many([event(i) for i in range(10)])
    consumer = await bus.consumer("workers")
    first = await fetch_n(consumer, 3)
    assert [d.event.data["i"] for d in first] == [0, 1, 2]
    info = await consumer.info()
    assert info.num_ack_pending == 3 and info.num_pending == 7


async def test_nak_redelivers_and_ack_does_not(bus: Bus) -> None:
    await bus.publish_many([event(0), event(1)])
    consumer = await bus.consumer("workers", ack_wait=5)
    a, b = await fetch_n(consumer, 2)
    await a.ack()
    await b.nak()
    [again] = await consumer.fetch(5, max_wait=1)
    assert again.event.data == {"i": 1} and again.num_delivered == 2
    await again.ack()
    assert await consumer.fetch(5, max_wait=0.3) == []


async def test_durable_consumer_resumes_where_it_was(bus: Bus) -> None:
    await bus.publish_many([event(i) for i in range(4)])
    consumer = await bus.consumer("durable")
    for d in await fetch_n(consumer, 2):
        await d.ack()
    await consumer.close()
    resumed = await bus.consumer("durable")
    assert [d.event.data["i"] for d in await fetch_stored(resumed)] == [2, 3]


async def test_tail_filters_by_pattern_and_replays_since(bus: Bus) -> None:
    await bus.publish(event(0, type_="com.github.push"))
    await bus.publish(event(1, type_="com.gitlab.push"))
    since = datetime.now(UTC) - timedelta(minutes=1)
    seen: list[str] = []

    async def read() -> None:
        async for ev in bus.tail("com.github.*", since=since):
            seen.append(ev.type)
            if len(seen) == 2:
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.2)
    await bus.publish(event(2, type_="com.github.pull_request.opened"))
    await asyncio.wait_for(reader, 5)
    assert seen == ["com.github.push", "com.github.pull_request.opened"]


async def test_kv_create_refuses_an_existing_key(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    await kv.create("r1", b"a")
    with pytest.raises(AlreadyExists, match="'r1' already exists"):
        await kv.create("r1", b"b")


async def test_kv_cas_refuses_a_stale_revision(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    rev = await kv.create("r1", b"a")
    await kv.cas("r1", b"b", rev)
    with pytest.raises(UpdateConflict, match="changed since revision"):
        await kv.cas("r1", b"c", rev)
    entry = await kv.get("r1")
    assert entry is not None and entry.value == b"b"


async def test_kv_update_loses_no_concurrent_increment(bus: Bus, nats_settings: NatsSettings) -> None:
    # Two connections race 40 increments each on one key.
    other = await Bus.connect(nats_settings, ensure=False)
    try:
        kvs = [await bus.kv(bus.layout.concurrency), await other.kv(bus.layout.concurrency)]

        async def bump(i: int) -> None:
            await kvs[i % 2].update_json("slots", lambda v: {"n": (v or {"n": 0})["n"] + 1})

        await asyncio.gather(*(bump(i) for i in range(80)))
        assert await kvs[0].get_json("slots") == {"n": 80}
    finally:
        await other.close()


async def test_kv_update_returning_none_changes_nothing(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.variables)
    assert await kv.update("absent", lambda v: None) is None
    assert await kv.get("absent") is None


async def test_kv_watch_sees_puts_and_deletes(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.deployments)
    changes: list[tuple[str, bytes | None]] = []

    async def watch() -> None:
        async for change in kv.watch():
            changes.append((change.key, change.value))
            if len(changes) == 2:
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    await kv.put("d1", b"v1")
    await kv.delete("d1")
    await asyncio.wait_for(watcher, 5)
    assert changes == [("d1", b"v1"), ("d1", None)]
    assert await kv.keys() == []


async def test_object_store_round_trip(bus: Bus) -> None:
    store = await bus.objects(bus.layout.results)
    blob = bytes(range(256)) * 1000
    await store.put("result-1", blob)
    assert await store.get("result-1") == blob
    assert await store.exists("result-1") and await store.names() == ["result-1"]
    await store.delete("result-1")
    with pytest.raises(NotFound, match="'result-1' not found"):
        await store.get("result-1")


async def test_layout_is_idempotent_and_namespaced(bus: Bus, nats_settings: NatsSettings) -> None:
    again = await Bus.connect(nats_settings)  # creates nothing new, raises nothing
    await again.close()
    names = {i.config.name for i in await bus.streams()}
    layout = Layout(nats_settings.namespace)
    assert {layout.events_stream, layout.runs_stream, layout.logs_stream} <= names
    assert f"KV_{layout.flow_runs}" in names and f"OBJ_{layout.code}" in names
    assert all(nats_settings.namespace.upper() in n or nats_settings.namespace in n for n in names)


def test_default_namespace_gives_the_contract_names() -> None:
    layout = Layout("flowbus")
    assert (layout.events_stream, layout.runs_stream, layout.logs_stream) == (
        "FLOWBUS_EVENTS", "FLOWBUS_RUNS", "FLOWBUS_LOGS")
    assert (layout.deployments, layout.flow_runs, layout.results, layout.code) == (
        "flowbus-deployments", "flowbus-flow-runs", "flowbus-results", "flowbus-code")
    assert layout.runs_subject("gpu") == "flowbus.runs.gpu"


async def test_changed_limits_update_the_stream(bus: Bus, nats_settings: NatsSettings) -> None:
    longer = nats_settings.model_copy(update={"events_max_age_days": 30})
    await (await Bus.connect(longer)).close()
    [info] = [i for i in await bus.streams() if i.config.name == bus.layout.events_stream]
    assert info.config.max_age == pytest.approx(30 * 86400)


async def test_connecting_again_changes_no_stream(
    bus: Bus, nats_settings: NatsSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # A stream that leaves a field to the server's default (the logs stream's dedup
    # window) must not count as different on every connect.
    with caplog.at_level("INFO", logger="flowbus.events.layout"):
        await (await Bus.connect(nats_settings)).close()
    assert not [r for r in caplog.records if "updated stream" in r.getMessage()], caplog.text


async def test_conflicting_stream_is_a_clear_error(bus: Bus, nats_settings: NatsSettings) -> None:
    # A stream of ours whose retention was changed by hand cannot be updated back.
    await bus.destroy_layout()
    from nats.js import api

    js = bus._nc.jetstream()
    await js.add_stream(api.StreamConfig(name=bus.layout.runs_stream, subjects=["elsewhere.>"],
                                         retention=api.RetentionPolicy.INTEREST))
    with pytest.raises(LayoutConflict, match=f"stream {bus.layout.runs_stream} exists"):
        await Bus.connect(nats_settings)


async def test_unreachable_nats_names_the_url() -> None:
    settings = NatsSettings(nats_url=["nats://127.0.0.1:1"], nats_connect_timeout=0.5)
    with pytest.raises(BusUnavailable, match=r"cannot reach NATS at nats://127.0.0.1:1"):
        await Bus.connect(settings)


async def test_password_is_not_shown_in_errors() -> None:
    settings = NatsSettings(nats_url=["nats://bob:s3cret@127.0.0.1:1"], nats_connect_timeout=0.5)
    with pytest.raises(BusUnavailable) as info:
        await Bus.connect(settings)
    assert "s3cret" not in str(info.value) and "***@127.0.0.1:1" in str(info.value)


async def test_publish_while_nats_is_down_fails_then_recovers(tmp_path: object) -> None:
    server = EmbeddedNats(str(tmp_path)).start()
    settings = NatsSettings(nats_url=[server.url], namespace="down", nats_request_timeout=0.5)
    bus = await Bus.connect(settings)
    try:
        await bus.publish(event(0))
        port = server.port
        server.stop()
        with pytest.raises(BusUnavailable, match="did not acknowledge"):
            await bus.publish(event(1))
        server = EmbeddedNats(str(tmp_path), port=port).start()
        for _ in range(100):
            if bus.is_connected:
                break
            await asyncio.sleep(0.05)
        ack = await bus.publish(event(2))
        assert ack.seq == 2  # the first event survived the restart on disk
    finally:
        await bus.close()
        server.close()


async def test_consumer_deliveries_decode_lazily(bus: Bus) -> None:
    await bus.publish_raw(f"{bus.layout.events_prefix}.raw", b"not an event")
    consumer = await bus.consumer("raw")
    [delivery] = await consumer.fetch(1, max_wait=1)
    assert delivery.data == b"not an event"
    with pytest.raises(InvalidEvent):
        _ = delivery.event
    await delivery.term()


async def test_streams_are_found_however_many_the_server_holds(
    bus: Bus, nats_settings: NatsSettings
) -> None:
    # JetStream lists streams 256 at a time; other namespaces must not hide ours.
    others = []
    try:
        # 18 namespaces x 17 streams, named to sort before ours: well past one page.
        for i in range(18):
            other = await Bus.connect(nats_settings.model_copy(update={"namespace": f"a{i:02d}{nats_settings.namespace}"}))
            others.append(other)
        names = {i.config.name for i in await bus.streams()}
        assert {bus.layout.events_stream, bus.layout.runs_stream, f"KV_{bus.layout.flow_runs}"} <= names
    finally:
        for other in others:
            await other.destroy_layout()
            await other.close()


async def test_a_waiting_fetch_returns_on_the_first_message(bus: Bus) -> None:
    consumer = await bus.consumer("eager")
    waiting = asyncio.create_task(consumer.fetch(10, max_wait=30))
    await asyncio.sleep(0.3)  # the fetch's pull request is open on the server
    await bus.publish(event(7))
    # It returns with the one message, not when ten came or the 30 s ran out.
    [delivery] = await asyncio.wait_for(waiting, 15)
    assert delivery.event.data == {"i": 7}


async def test_a_fetch_that_timed_out_does_not_delay_the_next_message(bus: Bus) -> None:
    consumer = await bus.consumer("again")
    assert await consumer.fetch(5, max_wait=0.2) == []
    waiting = asyncio.create_task(consumer.fetch(5, max_wait=30))
    await asyncio.sleep(0.5)  # the first fetch's request has expired meanwhile
    await bus.publish(event(8))
    [delivery] = await asyncio.wait_for(waiting, 15)
    assert delivery.event.data == {"i": 8}


async def test_open_requests_never_bring_more_than_the_room_asked_for(bus: Bus) -> None:
    consumer = await bus.consumer("bounded", ack_wait=30)
    waiting = asyncio.create_task(consumer.fetch(3, max_wait=20))
    await asyncio.sleep(0.3)
    await bus.publish(event(0))
    first = await asyncio.wait_for(waiting, 15)
    assert len(first) == 1
    # The request asked for 3 and brought 1: at most 2 more may come, however many wait.
    await bus.publish_many([event(i) for i in range(1, 11)])

    async def delivered() -> int:
        return int((await consumer.info()).num_ack_pending)

    for _ in range(200):
        if await delivered() >= 3:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert await delivered() == 3
    # What the open request brought is handed out without waiting, in order.
    rest = await asyncio.wait_for(consumer.fetch(2, max_wait=20), 5)
    assert [d.event.data["i"] for d in rest] == [1, 2]


async def test_messages_spread_over_two_requests_leave_no_phantom_credit(bus: Bus) -> None:
    """JetStream hands messages to the open pull requests in turn: counting each against
    the oldest request left the consumer sure that a request still owed messages when
    none did, and new messages waited for that request's deadline (30 s here)."""
    consumer = await bus.consumer("spread", ack_wait=120)
    got: list[Delivery] = []
    first = asyncio.create_task(consumer.fetch(20, max_wait=1.0))  # request A: 20, for 1 s
    await asyncio.sleep(0.3)
    await bus.publish(event(0))
    got += await asyncio.wait_for(first, 15)
    second = asyncio.create_task(consumer.fetch(40, max_wait=30))  # A owes 19; B: 21, for 30 s
    await asyncio.sleep(0.3)
    await bus.publish_many([event(i) for i in range(1, 21)])  # shared by A and B
    got += await asyncio.wait_for(second, 15)
    await asyncio.sleep(1.5)  # A has expired, with what it did not deliver
    await bus.publish_many([event(i) for i in range(21, 32)])  # B brings what it still owes

    async def collect(total: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(got) < total and loop.time() < deadline:
            got.extend(await consumer.fetch(17, max_wait=1.0))

    await collect(32)
    await bus.publish_many([event(i) for i in range(32, 37)])  # no request owes these
    await collect(37)
    assert sorted(d.event.data["i"] for d in got) == list(range(37))


async def test_closing_hands_back_what_was_delivered_but_not_fetched(bus: Bus) -> None:
    consumer = await bus.consumer("handback", ack_wait=60)
    await bus.publish(event(0))
    [_first] = await consumer.fetch(4, max_wait=5)
    await bus.publish_many([event(1), event(2)])
    for _ in range(200):  # the open request brings both
        if (await consumer.info()).num_ack_pending >= 3:
            break
        await asyncio.sleep(0.05)
    await consumer.close()
    resumed = await bus.consumer("handback", ack_wait=60)
    # Redelivered at once, not after the 60 s ack wait.
    again = await asyncio.wait_for(fetch_n(resumed, 2, within=10), 15)
    assert sorted(d.event.data["i"] for d in again) == [1, 2]
    assert all(d.num_delivered == 2 for d in again)
    with pytest.raises(BusUnavailable, match="closed"):
        await consumer.fetch(1, max_wait=0.1)


async def test_an_unconfirmed_ack_is_not_redelivered(bus: Bus) -> None:
    await bus.publish(event(0))
    consumer = await bus.consumer("quick", ack_wait=1)
    [delivery] = await consumer.fetch(1, max_wait=5)
    await delivery.ack(confirm=False)
    await asyncio.sleep(2)  # past the ack wait
    assert await consumer.fetch(1, max_wait=0.5) == []
