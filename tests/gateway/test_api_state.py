"""``/api/v1/artifacts``, ``/api/v1/blocks`` and ``/api/v1/concurrency-limits`` over real
NATS: records made by the SDK (the real producer), read, filtered and refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from gateway_helpers import problem

from events.secretbox import ENV_KEY, SecretBox
from events.settings import NatsSettings
from flowbus import _remote, flow
from flowbus.artifacts import create_markdown_artifact, create_table_artifact
from flowbus.blocks.system import Secret, String


@pytest.fixture
def sdk_on_server(nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's SDK keeps its state in the test's namespace (as on a runner)."""
    monkeypatch.setenv(ENV_KEY, SecretBox.generate_key())
    _remote.install(nats_settings)
    try:
        yield
    finally:
        _remote.reset()


async def sdk(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
async def read_only(client: aiohttp.ClientSession, gateway: Any) -> AsyncIterator[aiohttp.ClientSession]:
    async with client.post("/api/v1/api-keys", json={"name": "r", "scopes": ["read"]}) as r:
        key = (await r.json())["key"]
    async with aiohttp.ClientSession(base_url=gateway.url,
                                     headers={"Authorization": f"Bearer {key}"}) as session:
        yield session


@flow
def reporting(n: int) -> None:
    create_markdown_artifact(f"# run {n}", key="report")
    create_table_artifact([{"n": n}], key=None)


async def test_artifacts_are_listed_filtered_and_read_by_key_and_history(
    client: aiohttp.ClientSession, sdk_on_server: None,
) -> None:
    await sdk(reporting, 1)
    await sdk(reporting, 2)
    async with client.get("/api/v1/artifacts") as r:
        everything = await r.json()
    assert everything["total"] == 4
    async with client.get("/api/v1/artifacts", params={"type": "table"}) as r:
        tables = await r.json()
    assert [a["data"] for a in tables["items"]] == [[{"n": 2}], [{"n": 1}]]
    run_id = tables["items"][0]["flow_run_id"]
    async with client.get("/api/v1/artifacts", params={"flow_run_id": run_id}) as r:
        of_run = await r.json()
    assert {a["type"] for a in of_run["items"]} == {"markdown", "table"}
    async with client.get("/api/v1/artifacts/report") as r:
        assert r.status == 200
        latest = await r.json()
    assert latest["data"] == "# run 2"
    async with client.get("/api/v1/artifacts/report/history") as r:
        history = await r.json()
    assert [a["data"] for a in history["items"]] == ["# run 2", "# run 1"]
    async with client.get(f"/api/v1/artifacts/id/{latest['id']}") as r:
        assert (await r.json())["id"] == latest["id"]


@pytest.mark.parametrize("path", ["/api/v1/artifacts/NOPE", "/api/v1/artifacts/missing",
                                  "/api/v1/artifacts/" + "a" * 5000, "/api/v1/artifacts/missing/history",
                                  "/api/v1/artifacts/id/not-a-uuid",
                                  "/api/v1/artifacts/id/00000000-0000-0000-0000-000000000000"])
async def test_unknown_or_malformed_artifact_paths_are_404(client: aiohttp.ClientSession, path: str) -> None:
    async with client.get(path) as r:
        assert r.status == 404, await r.text()
        problem(await r.json())


@pytest.mark.parametrize("query", [{"key": "Bad Key"}, {"flow_run_id": "x"}, {"type": "x" * 100},
                                   {"limit": "0"}, {"surprise": "1"}])
async def test_bad_artifact_filters_are_400(client: aiohttp.ClientSession, query: dict[str, str]) -> None:
    async with client.get("/api/v1/artifacts", params=query) as r:
        assert r.status == 400, await r.text()
        assert next(iter(query)) in problem(await r.json())


async def test_blocks_are_listed_without_secrets_even_for_admin_and_deleted(
    client: aiohttp.ClientSession, read_only: aiohttp.ClientSession, sdk_on_server: None,
) -> None:
    await sdk(Secret(value="hunter2").save, "db-password")
    await sdk(String(value="eu-west-1").save, "region")
    for session in (client, read_only):
        async with session.get("/api/v1/blocks") as r:
            text = await r.text()
        assert r.status == 200 and "hunter2" not in text
        items = {f"{b['block_type']}/{b['name']}": b for b in (await r.json())["items"]}
        assert items["secret/db-password"]["data"] == {"value": "********"}
        assert items["string/region"]["data"] == {"value": "eu-west-1"}
        async with session.get("/api/v1/blocks/secret/db-password") as r:
            assert "hunter2" not in await r.text()
    async with read_only.delete("/api/v1/blocks/secret/db-password") as r:
        assert r.status == 403
    async with client.delete("/api/v1/blocks/secret/db-password") as r:
        assert r.status == 204
    async with client.get("/api/v1/blocks/secret/db-password") as r:
        assert r.status == 404
    async with client.get("/api/v1/blocks", params={"block_type": "BAD TYPE"}) as r:
        assert r.status == 400
    async with client.get("/api/v1/blocks/x/" + "y" * 3000) as r:
        assert r.status == 404


async def test_concurrency_limits_are_created_listed_and_deleted(
    client: aiohttp.ClientSession, read_only: aiohttp.ClientSession,
) -> None:
    async with client.post("/api/v1/concurrency-limits",
                           json={"name": "db", "limit": 2, "slot_decay_per_second": 0.5}) as r:
        assert r.status == 201, await r.text()
        assert await r.json() == {"name": "db", "limit": 2, "slot_decay_per_second": 0.5,
                                  "active_slots": 0, "waiters": 0}
    async with client.post("/api/v1/concurrency-limits", json={"name": "gpu", "limit": 1, "tag": True}) as r:
        assert r.status == 201
    async with read_only.get("/api/v1/concurrency-limits") as r:
        assert [limit["name"] for limit in (await r.json())["items"]] == ["db", "task-tag-gpu"]
    async with read_only.post("/api/v1/concurrency-limits", json={"name": "x", "limit": 1}) as r:
        assert r.status == 403
    async with client.delete("/api/v1/concurrency-limits/db") as r:
        assert r.status == 204
    async with client.get("/api/v1/concurrency-limits/db") as r:
        assert r.status == 404


@pytest.mark.parametrize("body", [{"name": "a b", "limit": 1}, {"name": "x", "limit": -1},
                                  {"name": "x", "limit": 10**9}, {"name": "x"},
                                  {"name": "x", "limit": 1, "slot_decay_per_second": 0},
                                  {"name": "x", "limit": 1, "extra": True}, [1, 2]])
async def test_bad_concurrency_limits_are_refused(client: aiohttp.ClientSession, body: Any) -> None:
    async with client.post("/api/v1/concurrency-limits", json=body) as r:
        assert r.status in (400, 422), await r.text()
        problem(await r.json())
    async with client.post("/api/v1/concurrency-limits", data=b"{" * 100_000,
                           headers={"Content-Type": "application/json"}) as r:
        assert r.status in (400, 413, 422)
