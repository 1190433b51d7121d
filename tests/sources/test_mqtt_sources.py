"""MQTT sources against a real mosquitto: v3.1.1 and v5, QoS 0/1, wildcards, shared subs."""

from __future__ import annotations

import json
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from events.source_store import SourceStore

from .brokers import Mosquitto
from .conftest import EventLog, spec, unique, wait_status


def mqtt_source(name: str, url: str, topics: list[str], **more: object) -> dict[str, object]:
    return {"name": name, "kind": "mqtt", "connection": {"url": url},
            "subscription": {"topics": topics, **more},
            "mapping": {"type": "iot.reading", "subject": "{{ topic }}",
                        "data": {"celsius": "{{ body.t }}"}}}


async def publish(broker: Mosquitto, messages: list[tuple[str, bytes]], *, qos: int = 1,
                  v5: bool = False, properties: Properties | None = None) -> None:
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=protocol,
                              identifier=unique("pub")) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos, properties=properties)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_mqtt_message_on_wildcard_topic_becomes_mapped_event(
    protocol: str, mosquitto: Mosquitto, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    root = unique("plant")
    await store.create(spec(**mqtt_source("sensors", mosquitto.url, [f"{root}/+/temp"],
                                          protocol=protocol)))
    async with start_sources():
        await wait_status(store, "sensors", "connected")
        await publish(mosquitto, [(f"{root}/hall/temp", b'{"t": 21.5}'),
                                  (f"{root}/hall/humidity", b'{"t": 0}')])
        [event] = await event_log.wait_for(1)
    assert event.type == "iot.reading"
    assert event.subject == f"{root}/hall/temp"
    assert event.data == {"celsius": 21.5}


async def test_mqtt_v5_user_property_message_id_is_the_event_id(
    mosquitto: Mosquitto, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    root = unique("v5")
    await store.create(spec(**mqtt_source("v5src", mosquitto.url, [f"{root}/#"], protocol="5")))
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("message-id", "reading-42")]
    async with start_sources():
        await wait_status(store, "v5src", "connected")
        await publish(mosquitto, [(f"{root}/a", b'{"t": 1}'), (f"{root}/a", b'{"t": 1}')],
                      v5=True, properties=props)
        events = await event_log.wait_for(1)
        await event_log.wait_for(1)
    assert [e.id for e in events] == ["reading-42"]


async def test_mqtt_shared_subscription_source_receives(
    mosquitto: Mosquitto, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    root = unique("shared")
    await store.create(spec(**mqtt_source("shared", mosquitto.url,
                                          [f"$share/flowbus/{root}/#"], protocol="5")))
    async with start_sources():
        await wait_status(store, "shared", "connected")
        await publish(mosquitto, [(f"{root}/x", json.dumps({"t": i}).encode()) for i in range(5)])
        events = await event_log.wait_for(5)
    assert sorted(e.data["celsius"] for e in events) == [0, 1, 2, 3, 4]


async def test_mqtt_broker_restart_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    broker = Mosquitto(tmp_path / "mq").start()
    try:
        await store.create(spec(**mqtt_source("restart", broker.url, ["line/#"])))
        async with start_sources():
            await wait_status(store, "restart", "connected")
            await publish(broker, [("line/1", json.dumps({"t": i}).encode()) for i in range(50)])
            broker.stop()
            broker.start()
            await publish(broker, [("line/1", json.dumps({"t": i}).encode())
                                   for i in range(50, 100)])
            await event_log.wait_for(100, within=15)
            await event_log.refresh()
    finally:
        broker.stop()
    values = sorted(e.data["celsius"] for e in event_log.events)
    assert values == list(range(100))


async def test_mqtt_wrong_credentials_give_a_clear_status(
    tmp_path: Path, store: SourceStore, start_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Mosquitto(tmp_path / "mq", users={"app": "right"}).start()
    try:
        monkeypatch.setenv("SOURCE_SECRET_MQTT", "wrong")
        await store.create(spec(name="locked", kind="mqtt",
                                connection={"url": broker.url, "username": "app",
                                            "password": {"env": "SOURCE_SECRET_MQTT"}},
                                subscription={"topics": ["a/#"]}))
        async with start_sources():
            status = await wait_status(store, "locked", "error")
    finally:
        broker.stop()
    assert status.reason is not None and status.reason.startswith("authentication failed")
