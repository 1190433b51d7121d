"""``/api/v1/sources``: CRUD, pause/resume, status, dead letters; hostile input refused by field."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from events.bus import Bus
from events.embedded import EmbeddedNats
from events.source_messages import SourceMessage
from events.source_store import SourceStore
from gateway.service import running
from gateway.settings import GatewaySettings

ADMIN = "sources-admin-key-for-the-tests-0123"


@pytest.fixture
async def api(bus: Bus) -> AsyncIterator[aiohttp.ClientSession]:
    settings = GatewaySettings(port=0, admin_api_key=ADMIN)
    async with running(bus, settings) as gw, aiohttp.ClientSession(
        base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN}"}
    ) as session:
        yield session


def definition(name: str = "orders", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name, "kind": "nats",
        "connection": {"url": "nats://127.0.0.1:4222", "username": "app",
                       "password": {"env": "SOURCE_SECRET_APP"}},
        "subscription": {"subject": "orders.>"},
        "mapping": {"type": "shop.order", "data": "{{ body }}"},
    }
    body.update(over)
    return body


async def test_create_get_list_replace_delete_a_source(api: aiohttp.ClientSession) -> None:
    created = await api.post("/api/v1/sources", json=definition())
    assert created.status == 201, await created.text()
    body = await created.json()
    assert body["connection"]["password"] == {"env": "SOURCE_SECRET_APP", "file": None}
    assert body["subscription"] == {"subject": "orders.>", "queue_group": None}
    assert body["status"] is None
    again = await api.post("/api/v1/sources", json=definition())
    assert again.status == 409
    listed = await (await api.get("/api/v1/sources")).json()
    assert [s["name"] for s in listed["items"]] == ["orders"]
    replaced = await api.put("/api/v1/sources/orders",
                             json=definition(subscription={"subject": "orders.eu.*"}))
    assert replaced.status == 200
    got = await (await api.get("/api/v1/sources/orders")).json()
    assert got["subscription"]["subject"] == "orders.eu.*"
    assert (await api.delete("/api/v1/sources/orders")).status == 204
    assert (await api.get("/api/v1/sources/orders")).status == 404


async def test_pause_and_resume_through_the_api(api: aiohttp.ClientSession) -> None:
    await api.post("/api/v1/sources", json=definition())
    paused = await (await api.post("/api/v1/sources/orders/pause")).json()
    assert paused["paused"] is True
    resumed = await (await api.post("/api/v1/sources/orders/resume")).json()
    assert resumed["paused"] is False
    assert (await api.post("/api/v1/sources/nope/pause")).status == 404
    assert (await api.get("/api/v1/sources/orders/status")).status == 404


async def test_dead_letters_list_redrive_and_purge_through_the_api(
    api: aiohttp.ClientSession, bus: Bus
) -> None:
    await api.post("/api/v1/sources", json=definition(mapping={"type": "x.y",
                                                               "data": "{{ body.n }}"}))
    store = await SourceStore.open(bus)
    await store.add_dead_letter("orders", SourceMessage(b'{"m": 1}', "orders.a"), "no n",
                                limit=10)
    await store.add_dead_letter("orders", SourceMessage(b'{"m": 2}', "orders.b"), "no n",
                                limit=10)
    letters = await (await api.get("/api/v1/sources/orders/dead-letters")).json()
    assert letters["total"] == 2 and letters["items"][0]["reason"] == "no n"
    redriven = await (await api.post("/api/v1/sources/orders/dead-letters/redrive",
                                     json={})).json()
    assert redriven == {"redriven": 0, "failed": 2}
    key = letters["items"][0]["key"]
    purged = await (await api.post("/api/v1/sources/orders/dead-letters/purge",
                                   json={"keys": [key]})).json()
    assert purged == {"purged": 1}
    assert (await (await api.get("/api/v1/sources/orders/dead-letters")).json())["total"] == 1


async def test_status_written_by_a_running_source_is_shown(
    api: aiohttp.ClientSession, bus: Bus, other_nats: EmbeddedNats, start_sources
) -> None:
    from .conftest import wait_status

    await api.post("/api/v1/sources", json=definition(
        connection={"url": other_nats.url}))
    async with start_sources():
        await wait_status(await SourceStore.open(bus), "orders", "connected")
        status = await (await api.get("/api/v1/sources/orders/status")).json()
    assert status["state"] == "connected" and status["gateway"] == "gw-test"


HOSTILE = [
    (definition(kind="kafka"), "kind"),
    (definition(name="../etc"), "name"),
    (definition(name="A" * 100), "name"),
    (definition(connection={"url": "nats://u:p@host:4222"}), "connection.url"),
    (definition(connection={"url": "nats://host:4222", "password": "hunter2"}),
     "connection.password"),
    (definition(connection={"url": "nats://host:4222", "password": {"env": "A", "file": "b"}}),
     "connection.password"),
    (definition(connection={"url": "nats://host:4222", "password": {"file": "../../etc/shadow"}}),
     "connection.password.file"),
    (definition(connection={"url": "mqtt://host:1883"}), "connection"),
    (definition(connection={"url": "nats://host:99999"}), "connection.url"),
    (definition(connection={"url": "nats://host:4222", "extra": 1}), "connection.extra"),
    (definition(subscription={"subject": "orders..x"}), "subscription.nats.subject"),
    (definition(subscription={"subject": "a.>.b"}), "subscription.nats.subject"),
    (definition(subscription={"topics": ["a/#"]}), "subscription.nats"),
    (definition(kind="mqtt", connection={"url": "mqtt://h"},
                subscription={"topics": ["a/#/b"]}), "subscription.mqtt.topics"),
    (definition(kind="mqtt", connection={"url": "mqtt://h"},
                subscription={"topics": ["a"], "qos": 2}), "subscription.mqtt.qos"),
    (definition(kind="amqp", connection={"url": "amqp://h"},
                subscription={"prefetch": 0, "queue": "q"}), "subscription.amqp.prefetch"),
    (definition(kind="amqp", connection={"url": "amqp://h"}, subscription={}),
     "subscription.amqp"),
    (definition(mapping={"data": "{{ body }}"}), "mapping"),
    (definition(mapping={"type": "{{ body.x "}), "mapping"),
    (definition(mapping={"type": "a", "evil": "{{ 1 }}"}), "mapping"),
    (definition(description="x" * 5000), "description"),
    (definition(unknown=True), "unknown"),
]


@pytest.mark.parametrize(("body", "field"), HOSTILE, ids=[f for _, f in HOSTILE])
async def test_hostile_definitions_are_refused_naming_the_field(
    api: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/api/v1/sources", json=body)
    assert response.status == 400, await response.text()
    problem = await response.json()
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem


async def test_malformed_oversized_and_unauthorised_requests_are_refused(
    api: aiohttp.ClientSession, bus: Bus
) -> None:
    assert (await api.post("/api/v1/sources", data=b"{not json",
                           headers={"Content-Type": "application/json"})).status == 400
    assert (await api.post("/api/v1/sources", data=io.BytesIO(b"x" * (11 * 1024 * 1024)),
                           headers={"Content-Type": "application/json"})).status == 413
    assert (await api.post("/api/v1/sources", json=[1, 2])).status == 400
    assert (await api.get("/api/v1/sources/..%2F..%2Fetc")).status == 404
    renamed = await api.put("/api/v1/sources/orders", json=definition(name="other"))
    assert renamed.status == 404
    await api.post("/api/v1/sources", json=definition())
    renamed = await api.put("/api/v1/sources/orders", json=definition(name="other"))
    assert renamed.status == 400
    async with aiohttp.ClientSession(base_url=str(api._base_url)) as anonymous:
        assert (await anonymous.post("/api/v1/sources", json=definition("x"))).status == 401
        assert (await anonymous.get("/api/v1/sources")).status == 401


async def test_dead_letter_and_control_endpoints_refuse_hostile_input(
    api: aiohttp.ClientSession
) -> None:
    await api.post("/api/v1/sources", json=definition())
    base = "/api/v1/sources/orders/dead-letters"
    bad_keys = await api.post(f"{base}/redrive", json={"keys": "all"})
    assert bad_keys.status == 400 and "keys" in (await bad_keys.json())["detail"]
    unknown = await api.post(f"{base}/purge", json={"keys": [], "force": True})
    assert unknown.status == 400 and "force" in (await unknown.json())["detail"]
    too_many = await api.post(f"{base}/purge", json={"keys": ["k"] * 10_001})
    assert too_many.status == 400
    not_json = await api.post(f"{base}/redrive", data=b"[",
                              headers={"Content-Type": "application/json"})
    assert not_json.status == 400
    assert (await api.post("/api/v1/sources/%2e%2e/pause")).status == 404
    assert (await api.get(f"{base}?limit=0")).status == 400
    assert (await api.get("/api/v1/sources/" + "a" * 300 + "/dead-letters")).status == 404
