"""Variables and automations over the REST API, with hostile input."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from gateway_helpers import problem

from events.bus import Bus

V = "/api/v1/variables"
A = "/api/v1/automations"


async def test_variable_lifecycle(client: aiohttp.ClientSession, bus: Bus) -> None:
    async with client.post(V, json={"name": "threshold", "value": {"max": 3}, "tags": ["ops"]}) as r:
        assert r.status == 201
    kv = await bus.kv(bus.layout.variables)
    assert (await kv.get_json("threshold"))["value"] == {"max": 3}
    async with client.patch(f"{V}/threshold", json={"value": [1, 2]}) as r:
        body = await r.json()
        assert body["value"] == [1, 2] and body["tags"] == ["ops"]
    async with client.get(V) as r:
        assert [v["name"] for v in (await r.json())["items"]] == ["threshold"]
    async with client.delete(f"{V}/threshold") as r:
        assert r.status == 204
    async with client.get(f"{V}/threshold") as r:
        assert r.status == 404


async def test_duplicate_variable_is_409(client: aiohttp.ClientSession) -> None:
    for status in (201, 409):
        async with client.post(V, json={"name": "x", "value": 1}) as r:
            assert r.status == status


@pytest.mark.parametrize("body", [{"name": "Has Caps", "value": 1}, {"value": 1}, {"name": "a" * 300, "value": 1},
                                  {"name": "x", "value": 1, "secret": True}])
async def test_bad_variables_are_400(client: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    async with client.post(V, json=body) as r:
        assert r.status == 400 and problem(await r.json(content_type=None))


async def test_oversized_variable_is_413(client: aiohttp.ClientSession) -> None:
    async with client.post(V, json={"name": "big", "value": "x" * 70_000}) as r:
        assert r.status == 413


AUTOMATION = {
    "name": "retry failed etl",
    "trigger": {"type": "event", "expect": ["flowbus.flow-run.Failed"], "match": {"deployment": "etl"}},
    "actions": [{"type": "run-deployment", "deployment": "etl-cleanup"}],
}


async def test_automation_lifecycle(client: aiohttp.ClientSession, bus: Bus) -> None:
    async with client.post(A, json=AUTOMATION) as r:  # its target does not exist yet
        assert r.status == 422 and "etl-cleanup" in problem(await r.json(content_type=None))
    async with client.post("/api/v1/deployments", json={"name": "etl-cleanup", "flow_name": "c"}) as r:
        assert r.status == 201
    async with client.post(A, json=AUTOMATION) as r:
        made = await r.json()
        assert r.status == 201 and made["enabled"] is True
    kv = await bus.kv(bus.layout.automations)
    assert (await kv.get_json(made["id"]))["trigger"]["expect"] == AUTOMATION["trigger"]["expect"]
    async with client.put(f"{A}/{made['id']}", json={**AUTOMATION, "enabled": False}) as r:
        replaced = await r.json()
        assert replaced["enabled"] is False and replaced["created"] == made["created"]
    async with client.get(A) as r:
        assert [a["id"] for a in (await r.json())["items"]] == [made["id"]]
    async with client.delete(f"{A}/{made['id']}") as r:
        assert r.status == 204
    async with client.get(f"{A}/{made['id']}") as r:
        assert r.status == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"name": None}, "name"),
    ({"trigger": "always"}, "trigger"),
    ({"trigger": None}, "trigger"),
    ({"actions": []}, "actions"),
    ({"actions": ["run it"]}, "actions.0"),
    ({"colour": "red"}, "colour"),
])
async def test_malformed_automations_are_400_naming_the_field(client: aiohttp.ClientSession,
                                                              change: dict[str, Any], field: str) -> None:
    body = {**AUTOMATION, **change}
    body = {k: v for k, v in body.items() if v is not None}
    async with client.post(A, json=body) as r:
        answer = await r.json(content_type=None)
        assert r.status == 400 and answer["errors"][0]["field"] == field, answer


async def test_replacing_an_unknown_automation_is_404(client: aiohttp.ClientSession) -> None:
    async with client.put(f"{A}/ghost", json=AUTOMATION) as r:
        assert r.status == 404


async def test_oversized_api_bodies_are_413(start_gateway: Any) -> None:
    from gateway_helpers import ADMIN_KEY

    async with start_gateway(request_max_bytes=2048) as gw, aiohttp.ClientSession(
        base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as s:
        for path in (V, A, "/api/v1/deployments", "/api/v1/webhooks"):
            async with s.post(path, json={"name": "x" * 4096}) as r:
                assert r.status == 413, path
                assert "FLOWBUS_GATEWAY_REQUEST_MAX_BYTES" in problem(await r.json(content_type=None))
