"""Finding 9: automation secrets are write-only through the API, whatever the scope."""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from events.bus import Bus
from events.sealed import SecretBox, open_tree
from gateway.api.automations import MASK
from tests.security.conftest import KeyMaker

SECRET = "s3cret-s3cret-s3cret-0123"
SPEC: dict[str, Any] = {
    "name": "notify", "trigger": {"expect": ["shop.x"]},
    "actions": [{"type": "call-webhook", "url": "https://hooks.example.com/x", "secret": SECRET,
                 "headers": {"Authorization": "Bearer tok-123", "X-Api-Key": "k-9",
                             "X-Team": "shop"}}],
}


async def test_secrets_are_shown_once_then_masked_for_every_scope(
    admin: aiohttp.ClientSession, client_with: KeyMaker, bus: Bus
) -> None:
    async with admin.post("/api/v1/automations", json=SPEC) as r:
        made = await r.json()
        assert r.status == 201 and made["actions"][0]["secret"] == SECRET
    reader = await client_with("read")
    for session in (reader, admin):
        async with session.get(f"/api/v1/automations/{made['id']}") as r:
            action = (await r.json())["actions"][0]
        assert action["secret"] == MASK
        assert action["headers"] == {"Authorization": MASK, "X-Api-Key": MASK, "X-Team": "shop"}
        async with session.get("/api/v1/automations") as r:
            listed = await r.text()
        assert SECRET not in listed and "tok-123" not in listed and "k-9" not in listed


async def test_putting_back_a_masked_definition_keeps_the_secrets(
    admin: aiohttp.ClientSession, bus: Bus
) -> None:
    async with admin.post("/api/v1/automations", json=SPEC) as r:
        made = await r.json()
    async with admin.get(f"/api/v1/automations/{made['id']}") as r:
        shown = await r.json()
    edited = {k: shown[k] for k in SPEC}
    edited["name"] = "renamed"
    async with admin.put(f"/api/v1/automations/{made['id']}", json=edited) as r:
        assert r.status == 200 and (await r.json())["actions"][0]["secret"] == MASK
    stored = await (await bus.kv(bus.layout.automations)).get_json(made["id"])
    action = open_tree(stored, SecretBox(os.environ["FLOWBUS_SECRETS_KEY"]))["actions"][0]
    assert stored["name"] == "renamed" and action["secret"] == SECRET
    assert action["headers"]["Authorization"] == "Bearer tok-123"
