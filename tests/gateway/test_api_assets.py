"""``/api/v1/assets``: the catalog the orchestrator keeps from asset events, read over HTTP.

The records are made by their real producers: a flow with ``@materialize`` tasks
publishes through the SDK's NATS sink, and the orchestrator's `AssetIndexer`
folds the events into ``flowbus-assets``. Bad, oversized and unknown keys get
4xx answers that say what was wrong, never a 5xx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from gateway_helpers import problem
from yarl import URL

from events.assets import REFERENCED, get_asset, list_assets
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.control import ControlRequest
from events.settings import NatsSettings
from gateway.api.assets import Asset
from tests.assets.asset_helpers import PRODUCED_EVENTS, index, produce
from tests.control_desk import control_desk


def path(key: str) -> str:
    return f"/api/v1/assets/{quote(key, safe='')}"


@pytest.fixture
async def cataloged(bus: Bus, nats_settings: NatsSettings) -> AsyncIterator[None]:
    await produce(nats_settings)
    # clean: referenced postgres + materialised; report: referenced clean + materialised
    await index(bus, PRODUCED_EVENTS)
    yield


async def test_assets_are_listed_with_their_latest_materialisation(
        cataloged: None, client: aiohttp.ClientSession) -> None:
    async with client.get("/api/v1/assets") as r:
        assert r.status == 200, await r.text()
        page = await r.json()
    assert [a["key"] for a in page["items"]] == [
        "postgres://shop/orders", "s3://lake/clean.parquet", "s3://lake/report.csv"]
    assert page["total"] == 3 and page["next_offset"] is None
    async with client.get(path("s3://lake/clean.parquet")) as r:
        assert r.status == 200, await r.text()
        clean = await r.json()
    latest = clean["latest_materialization"]
    assert latest["status"] == "succeeded" and latest["materialized_by"] == "spark"
    assert latest["metadata"] == {"rows": 3} and latest["upstream"] == ["postgres://shop/orders"]
    assert clean["last_succeeded"] == latest["time"]
    async with client.get(path("s3://lake/report.csv")) as r:
        report = await r.json()
    assert report["latest_materialization"]["upstream"] == ["s3://lake/clean.parquet"]
    assert report["latest_materialization"]["flow_run_id"] == latest["flow_run_id"]
    async with client.get("/api/v1/assets", params={"prefix": "s3://lake/r", "limit": "1"}) as r:
        assert [a["key"] for a in (await r.json())["items"]] == ["s3://lake/report.csv"]


async def test_assets_show_their_lineage(cataloged: None, client: aiohttp.ClientSession) -> None:
    # postgres -> clean -> report, from the latest materialisations.
    async with client.get(path("s3://lake/clean.parquet")) as r:
        clean = await r.json()
    assert clean["upstream"] == ["postgres://shop/orders"]
    assert clean["downstream"] == ["s3://lake/report.csv"]
    async with client.get("/api/v1/assets") as r:
        lineage = {a["key"]: (a["upstream"], a["downstream"]) for a in (await r.json())["items"]}
    assert lineage == {
        "postgres://shop/orders": ([], ["s3://lake/clean.parquet"]),
        "s3://lake/clean.parquet": (["postgres://shop/orders"], ["s3://lake/report.csv"]),
        "s3://lake/report.csv": (["s3://lake/clean.parquet"], []),
    }
    # A filtered page still names downstream assets outside the filter.
    async with client.get("/api/v1/assets", params={"prefix": "postgres://"}) as r:
        [only] = (await r.json())["items"]
    assert only["downstream"] == ["s3://lake/clean.parquet"]


async def test_a_failed_materialisation_replaces_the_latest_but_not_last_succeeded(
        bus: Bus, nats_settings: NatsSettings, cataloged: None,
        client: aiohttp.ClientSession) -> None:
    before = await get_asset(await bus.kv(bus.layout.assets), "s3://lake/clean.parquet")
    assert before is not None and before.last_succeeded is not None
    await produce(nats_settings, fail=True)
    await index(bus, 2)  # clean: referenced + failed; report never ran
    async with client.get(path("s3://lake/clean.parquet")) as r:
        after = Asset.model_validate(await r.json())
    assert after.latest_materialization is not None
    assert after.latest_materialization.status == "failed"
    assert after.latest_materialization.metadata == {"rows": 3}
    assert after.last_succeeded == before.last_succeeded
    assert after.created == before.created


async def test_a_redelivered_or_late_event_changes_nothing(
        bus: Bus, cataloged: None) -> None:
    kv = await bus.kv(bus.layout.assets)
    before = await list_assets(kv)
    # Replay every stored asset event (as a redelivery would) through a fresh consumer.
    indexer = await index(bus, PRODUCED_EVENTS, durable="assets-replay")
    assert indexer.indexed == PRODUCED_EVENTS
    assert await list_assets(kv) == before


async def test_a_forged_or_malformed_asset_event_is_dropped(bus: Bus) -> None:
    good = CloudEvent.create(REFERENCED, source="/x", subject="s3://a/b",
                             data={"asset": {"key": "s3://a/b"}})
    wrong_subject = CloudEvent.create(REFERENCED, source="/x", subject="s3://a/other",
                                      data={"asset": {"key": "s3://a/b"}})
    bad_key = CloudEvent.create(REFERENCED, source="/x", subject="not a key",
                                data={"asset": {"key": "not a key"}})
    extra = CloudEvent.create(REFERENCED, source="/x", subject="s3://a/c",
                              data={"asset": {"key": "s3://a/c"}, "surprise": 1})
    prefix = bus.layout.events_prefix
    for event in (wrong_subject, bad_key, extra):
        await bus.publish(event)
    # A body claiming to be an asset event on a subject that is not its own.
    await bus.publish_raw(f"{prefix}.flowbus.asset.materialization.succeeded", bus.encode(good))
    indexer = await index(bus, 4)
    assert indexer.dropped == 4 and indexer.indexed == 0
    assert await list_assets(await bus.kv(bus.layout.assets)) == []


@pytest.mark.parametrize("raw_path", [
    "/api/v1/assets/not-a-uri",
    "/api/v1/assets/S3%3A%2F%2Fbucket%2Fx",
    "/api/v1/assets/s3%3A%2F%2Fb%2Fa%20b",
    "/api/v1/assets/s3%3A%2F%2Fb%2F%3Cscript%3E",
    "/api/v1/assets/s3%3A%2F%2Fb%2F%00",
    "/api/v1/assets/s3%3A%2F%2Fb%2F%0A",
    "/api/v1/assets/s3%3A%2F%2Fb%2F%FF%FE",
    "/api/v1/assets/" + "s3%3A%2F%2Fb%2F" + "x" * 5000,
    "/api/v1/assets/s3%3A%2F%2Fnever%2Fmade.csv",
    "/api/v1/assets/..",
])
async def test_a_bad_oversized_or_unknown_key_is_a_404_naming_it(
        client: aiohttp.ClientSession, desk: Any, raw_path: str) -> None:
    for method in ("GET", "DELETE"):
        async with client.request(method, URL(str(client._base_url) + raw_path,
                                              encoded=True)) as r:
            text = await r.text()
            assert r.status == 404, (method, text)
            assert "asset" in problem(await r.json()), text


async def test_an_asset_is_deleted_by_the_leading_orchestrator(
        bus: Bus, cataloged: None, client: aiohttp.ClientSession, gateway: Any,
        nats_settings: NatsSettings) -> None:
    key = "s3://lake/clean.parquet"
    # No orchestrator leading: nothing is deleted, and the API says to retry.
    async with client.delete(path(key)) as r:
        assert r.status == 503 and r.headers["Retry-After"], await r.text()
    async with client.post("/api/v1/api-keys", json={"name": "r", "scopes": ["read"]}) as r:
        read_key = (await r.json())["key"]
    async with control_desk(bus):
        async with aiohttp.ClientSession(base_url=gateway.url, headers={
                "Authorization": f"Bearer {read_key}"}) as reader, reader.delete(path(key)) as r:
            assert r.status == 403, await r.text()  # deleting needs the write scope
        async with client.delete(path(key)) as r:
            assert r.status == 204, await r.text()
        async with client.get(path(key)) as r:
            assert r.status == 404
        async with client.delete(path(key)) as r:
            assert r.status == 404, await r.text()
        async with client.get(path("s3://lake/report.csv")) as r:
            report = await r.json()
        assert report["upstream"] == [key]  # what report's materialisation read is kept
    assert await get_asset(await bus.kv(bus.layout.assets), key) is None
    # A later materialisation puts it back in the catalog.
    await produce(nats_settings)
    await index(bus, PRODUCED_EVENTS)
    async with client.get(path(key)) as r:
        assert r.status == 200 and (await r.json())["downstream"] == ["s3://lake/report.csv"]


@pytest.mark.parametrize("request_body", [
    {"action": "delete-asset"}, {"action": "delete-asset", "asset_key": "no scheme"},
    {"action": "delete-asset", "asset_key": "s3://b/x", "flow_run_id": "r1"},
    {"action": "cancel", "asset_key": "s3://b/x"},
])
def test_a_malformed_asset_control_request_is_refused(request_body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="asset"):
        ControlRequest.model_validate(request_body)


@pytest.mark.parametrize("params", [
    {"prefix": ""}, {"prefix": "x" * 600}, {"prefix": "s3://\x01"}, {"limit": "0"},
    {"limit": "many"}, {"offset": "-1"}, {"colour": "red"},
])
async def test_a_bad_list_query_is_a_422_naming_the_parameter(
        client: aiohttp.ClientSession, params: dict[str, str]) -> None:
    async with client.get("/api/v1/assets", params=params) as r:
        assert r.status in (400, 422), await r.text()
        assert next(iter(params)) in problem(await r.json())


async def test_reading_assets_needs_a_key(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/api/v1/assets") as r:
        assert r.status == 401
