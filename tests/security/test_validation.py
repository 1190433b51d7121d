"""Finding 10: what the orchestrator would refuse is refused by the API, and nothing is
stored on a 4xx."""

from __future__ import annotations

import aiohttp

from events.bus import Bus
from gateway.service import running
from gateway.settings import GatewaySettings
from tests.security.conftest import ADMIN_KEY

D = "/api/v1/deployments"


async def test_a_misspelt_trigger_key_is_422_and_the_live_deployment_is_untouched(
    admin: aiohttp.ClientSession, bus: Bus
) -> None:
    good = [{"expect": ["com.example.x"]}]
    async with admin.post(D, json={"name": "live", "flow_name": "f", "entrypoint": "f.py:f",
                                   "triggers": good}) as r:
        assert r.status == 201
    async with admin.patch(f"{D}/live", json={"triggers": [{"expcet": ["com.example.x"]}]}) as r:
        body = await r.json()
        assert r.status == 422 and body["errors"][0]["field"] == "triggers.0", body
        assert "expcet" in body["detail"]
    async with admin.patch(f"{D}/live", json={"schedules": [{"cron": "not a cron"}]}) as r:
        body = await r.json()
        assert r.status == 422 and body["errors"][0]["field"] == "schedules.0", body
    stored = await (await bus.kv(bus.layout.deployments)).get_json("live")
    assert stored["triggers"] == good and stored["schedules"] == []


async def test_a_deployment_too_large_to_announce_is_413_and_not_stored(bus: Bus) -> None:
    settings = GatewaySettings(port=0, admin_api_key=ADMIN_KEY, event_max_bytes=4096)
    async with running(bus, settings) as gw, aiohttp.ClientSession(
            base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        async with admin.post(D, json={"name": "big", "flow_name": "f", "entrypoint": "f.py:f",
                                       "parameters": {"blob": "x" * 5000}}) as r:
            assert r.status == 413, await r.text()
        async with admin.post(D, json={"name": "big", "flow_name": "f",
                                       "entrypoint": "f.py:f"}) as r:
            assert r.status == 201
        async with admin.patch(f"{D}/big", json={"parameters": {"blob": "x" * 5000}}) as r:
            assert r.status == 413
    stored = await (await bus.kv(bus.layout.deployments)).get_json("big")
    assert stored["parameters"] == {}
