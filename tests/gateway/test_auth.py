"""API keys: bearer auth, scopes, hashing, revocation, the per-key rate limit, settings."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aiohttp
import pytest
from gateway_helpers import ADMIN_KEY, problem
from pydantic import ValidationError

from events.bus import Bus
from events.errors import SettingsError
from events.settings import check_environment
from gateway.settings import GatewaySettings

EVENT = json.dumps({"specversion": "1.0", "id": "1", "source": "/s", "type": "a.b"}).encode()
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


async def new_key(client: aiohttp.ClientSession, *scopes: str) -> str:
    async with client.post("/api/v1/api-keys", json={"name": "k", "scopes": list(scopes)}) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["key"])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_missing_key_is_401_with_www_authenticate(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.post("/events", data=EVENT, headers=STRUCTURED) as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in problem(await r.json(content_type=None))


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "token abc"])
async def test_malformed_authorization_is_401(anonymous: aiohttp.ClientSession, header: str) -> None:
    async with anonymous.get("/api/v1/deployments", headers={"Authorization": header}) as r:
        assert r.status == 401


@pytest.mark.parametrize("key", ["nope", "fbk_0123456789abcdef_guess", "fbk_zz_x", "x" * 5000])
async def test_unknown_key_is_401(anonymous: aiohttp.ClientSession, key: str) -> None:
    async with anonymous.get("/api/v1/deployments", headers=bearer(key)) as r:
        assert r.status == 401 and "unknown or revoked" in problem(await r.json(content_type=None))


async def test_ingest_key_sends_events_but_cannot_read(client: aiohttp.ClientSession,
                                                       anonymous: aiohttp.ClientSession) -> None:
    key = await new_key(client, "ingest")
    async with anonymous.post("/events", data=EVENT, headers={**STRUCTURED, **bearer(key)}) as r:
        assert r.status == 202
    async with anonymous.get("/api/v1/deployments", headers=bearer(key)) as r:
        body = await r.json(content_type=None)
        assert r.status == 403 and "'read' scope" in problem(body)


async def test_read_key_reads_but_cannot_write_or_ingest(client: aiohttp.ClientSession,
                                                         anonymous: aiohttp.ClientSession) -> None:
    key = await new_key(client, "read")
    async with anonymous.get("/api/v1/deployments", headers=bearer(key)) as r:
        assert r.status == 200
    async with anonymous.post("/api/v1/variables", headers=bearer(key),
                              json={"name": "v", "value": 1}) as r:
        assert r.status == 403
    async with anonymous.post("/events", data=EVENT, headers={**STRUCTURED, **bearer(key)}) as r:
        assert r.status == 403


async def test_write_key_implies_read_but_not_admin(client: aiohttp.ClientSession,
                                                    anonymous: aiohttp.ClientSession) -> None:
    key = await new_key(client, "write")
    async with anonymous.get("/api/v1/variables", headers=bearer(key)) as r:
        assert r.status == 200
    async with anonymous.post("/api/v1/api-keys", headers=bearer(key),
                              json={"name": "x", "scopes": ["admin"]}) as r:
        assert r.status == 403


async def test_keys_are_stored_hashed_and_never_listed(client: aiohttp.ClientSession, bus: Bus) -> None:
    key = await new_key(client, "ingest")
    key_id = key.split("_")[1]
    kv = await bus.kv(bus.layout.api_keys)
    entry = await kv.get(key_id)
    assert entry is not None and key.encode() not in entry.value
    assert entry.json()["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    async with client.get("/api/v1/api-keys") as r:
        listed = await r.json()
    assert [k["id"] for k in listed["items"]] == [key_id]
    assert "key" not in listed["items"][0] and "sha256" not in listed["items"][0]


async def test_revoked_key_stops_working_once_the_cache_expires(
    client: aiohttp.ClientSession, anonymous: aiohttp.ClientSession, clock: Any
) -> None:
    key = await new_key(client, "read")
    async with anonymous.get("/api/v1/variables", headers=bearer(key)) as r:
        assert r.status == 200
    async with client.delete(f"/api/v1/api-keys/{key.split('_')[1]}") as r:
        assert r.status == 204
    clock.advance(6)
    async with anonymous.get("/api/v1/variables", headers=bearer(key)) as r:
        assert r.status == 401


async def test_revoking_an_unknown_key_is_404(client: aiohttp.ClientSession) -> None:
    async with client.delete("/api/v1/api-keys/0123456789abcdef") as r:
        assert r.status == 404
    async with client.delete("/api/v1/api-keys/..%2F..") as r:
        assert r.status == 404


@pytest.mark.parametrize("body", [{"name": "k", "scopes": ["root"]}, {"name": "k", "scopes": []},
                                  {"name": "", "scopes": ["read"]}, {"scopes": ["read"]}])
async def test_bad_key_definitions_are_400_naming_the_field(client: aiohttp.ClientSession,
                                                            body: dict[str, Any]) -> None:
    async with client.post("/api/v1/api-keys", json=body) as r:
        answer = await r.json(content_type=None)
        assert r.status == 400 and answer["errors"][0]["field"] in ("name", "scopes", "scopes.0")


async def test_rate_limit_per_key_is_429_with_retry_after(start_gateway: Any, clock: Any) -> None:
    async with start_gateway(rate_limit_per_second=1, rate_limit_burst=2) as gw:
        async with aiohttp.ClientSession(base_url=gw.url, headers=bearer(ADMIN_KEY)) as s:
            for _ in range(2):
                async with s.get("/api/v1/variables") as r:
                    assert r.status == 200
            async with s.get("/api/v1/variables") as r:
                assert r.status == 429 and r.headers["Retry-After"] == "1"
            clock.advance(1)
            async with s.get("/api/v1/variables") as r:
                assert r.status == 200


async def test_auth_off_needs_no_key(start_gateway: Any) -> None:
    async with start_gateway(auth=False) as gw, aiohttp.ClientSession(base_url=gw.url) as s:
        async with s.post("/events", data=EVENT, headers=STRUCTURED) as r:
            assert r.status == 202


def test_a_short_admin_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 24"):
        GatewaySettings(admin_api_key="short")


def test_unknown_gateway_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="FLOWBUS_GATEWAY_PORTT"):
        check_environment({"FLOWBUS_GATEWAY_PORTT": "1"})


def test_gateway_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUS_GATEWAY_PORT", "9999")
    monkeypatch.setenv("FLOWBUS_GATEWAY_WEBHOOK_ALLOWED_ORIGINS", "a.example, b.example")
    settings = GatewaySettings()
    assert settings.port == 9999 and settings.webhook_allowed_origins == ["a.example", "b.example"]
    check_environment()
