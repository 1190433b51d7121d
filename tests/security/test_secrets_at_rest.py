"""Secrets at rest: webhook, automation and channel secrets are stored sealed with
FLOWBUS_SECRETS_KEY, opened only where they are used, and legacy plain records still work."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events import automation_store as store
from events.automations import Automation, parse_automation
from events.bus import Bus
from events.secretbox import SecretBox, SecretsKeyError, is_sealed
from gateway.service import running
from gateway.settings import GatewaySettings
from gateway.signatures import Verifier
from gateway.webhooks import StoredWebhook
from orchestrator.automations.http import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.automations.support import Receiver, event, start, wait_events, wait_until
from tests.security.conftest import ADMIN_KEY

H = "/api/v1/webhooks"
SECRET = "s3cret-s3cret-s3cret-0123"
TOKEN = "Bearer tok-plain-123"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.close()


def _sign(secret: str, payload: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def _raw(bus: Bus, bucket: str, key: str) -> bytes:
    entry = await (await bus.kv(bucket)).get(key)
    assert entry is not None, key
    return bytes(entry.value)


async def _deliver(url: str, slug: str, secret: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(
        f"{url}/hooks/{slug}", data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": _sign(secret, body),
                 "X-GitHub-Delivery": os.urandom(8).hex()},
    ) as r:
        return r.status, dict(await r.json())


async def test_a_webhook_secret_is_sealed_in_the_bucket_and_signatures_still_verify(
    admin: aiohttp.ClientSession, gateway: Any, bus: Bus
) -> None:
    async with admin.post(H, json={"slug": "gh", "verifier": "github"}) as r:
        made = await r.json()
        assert r.status == 201, made
    secret = made["secret"]
    raw = await _raw(bus, bus.layout.webhooks, "gh")
    assert secret.encode() not in raw
    stored = json.loads(raw)["secret"]
    assert is_sealed(stored) and SecretBox(os.environ["FLOWBUS_SECRETS_KEY"]).open(stored) == secret
    status, body = await _deliver(gateway.url, "gh", secret, b'{"action": "opened"}')
    assert status == 202, body
    status, body = await _deliver(gateway.url, "gh", "not-the-secret", b'{"action": "closed"}')
    assert status == 401, body
    # Rotating writes a new sealed secret; the old one stops verifying.
    async with admin.post(f"{H}/gh/rotate-secret") as r:
        rotated = (await r.json())["secret"]
    raw = await _raw(bus, bus.layout.webhooks, "gh")
    assert rotated.encode() not in raw and is_sealed(json.loads(raw)["secret"])
    assert (await _deliver(gateway.url, "gh", rotated, b"{}"))[0] == 202
    assert (await _deliver(gateway.url, "gh", secret, b"{}"))[0] == 401


async def test_a_legacy_plain_webhook_record_still_verifies_and_is_sealed_on_its_next_write(
    admin: aiohttp.ClientSession, gateway: Any, bus: Bus
) -> None:
    # The record as the gateway wrote it before sealing existed: the model, secret in clear.
    now = datetime.now(UTC)
    legacy = StoredWebhook(slug="old", verifier=Verifier.GITHUB, created=now, updated=now,
                           secret=SECRET)
    await (await bus.kv(bus.layout.webhooks)).put("old", legacy.model_dump_json().encode())
    assert (await _deliver(gateway.url, "old", SECRET, b'{"n": 1}'))[0] == 202
    async with admin.patch(f"{H}/old", json={"enabled": True}) as r:
        assert r.status == 200, await r.text()
    raw = await _raw(bus, bus.layout.webhooks, "old")
    assert SECRET.encode() not in raw and is_sealed(json.loads(raw)["secret"])
    assert (await _deliver(gateway.url, "old", SECRET, b'{"n": 2}'))[0] == 202


async def test_a_gateway_with_another_key_answers_a_clear_503_naming_the_setting(
    admin: aiohttp.ClientSession, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with admin.post(H, json={"slug": "gh", "verifier": "github"}) as r:
        secret = (await r.json())["secret"]
    monkeypatch.setenv("FLOWBUS_SECRETS_KEY", SecretBox.generate_key())
    async with running(bus, GatewaySettings(port=0, admin_api_key=ADMIN_KEY)) as other:
        status, body = await _deliver(other.url, "gh", secret, b"{}")
    assert status == 503 and "FLOWBUS_SECRETS_KEY" in body["detail"], body


async def test_a_gateway_without_a_key_refuses_to_start_when_webhooks_hold_secrets(
    admin: aiohttp.ClientSession, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with admin.post(H, json={"slug": "gh", "verifier": "github"}) as r:
        assert r.status == 201
    monkeypatch.delenv("FLOWBUS_SECRETS_KEY")
    with pytest.raises(SecretsKeyError, match="FLOWBUS_SECRETS_KEY"):
        async with running(bus, GatewaySettings(port=0, admin_api_key=ADMIN_KEY)):
            pass


async def test_a_malformed_key_is_refused_at_start_naming_the_setting(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWBUS_SECRETS_KEY", "not-a-key")
    with pytest.raises(SecretsKeyError, match="FLOWBUS_SECRETS_KEY is not a valid key"):
        async with running(bus, GatewaySettings(port=0, admin_api_key=ADMIN_KEY)):
            pass


def _call_webhook(url: str) -> dict[str, Any]:
    return {"type": "call-webhook", "url": url, "secret": SECRET,
            "headers": {"Authorization": TOKEN, "X-Team": "shop"},
            "body": {"order": "{{ event.data.order }}"}}


async def test_an_automation_stored_sealed_still_signs_and_sends_its_header(
    admin: aiohttp.ClientSession, bus: Bus, receiver: Receiver
) -> None:
    spec = {"name": "hook", "trigger": {"expect": ["shop.order.created"]},
            "actions": [_call_webhook(f"{receiver.url}/in")]}
    async with admin.post("/api/v1/automations", json=spec) as r:
        made = await r.json()
        assert r.status == 201, made
    raw = await _raw(bus, bus.layout.automations, made["id"])
    assert SECRET.encode() not in raw and TOKEN.encode() not in raw and b"shop" in raw
    action = json.loads(raw)["actions"][0]
    assert is_sealed(action["secret"]) and is_sealed(action["headers"]["Authorization"])
    orch = await start(bus)
    try:
        async def known() -> bool:
            return made["id"] in orch.orch.automations.catalog.automations

        await wait_until(known)
        await bus.publish(event("shop.order.created", data={"order": "A-1"}))
        await wait_events(bus, "flowbus.automation.action.executed")
    finally:
        await orch.close()
    (sent,) = receiver.requests
    assert sent.headers["Authorization"] == TOKEN and sent.headers["X-Team"] == "shop"
    assert verify(SECRET, sent.headers[TIMESTAMP_HEADER], sent.body, sent.headers[SIGNATURE_HEADER])


async def test_a_sealed_secret_sent_to_the_api_is_refused(admin: aiohttp.ClientSession) -> None:
    sealed = SecretBox(SecretBox.generate_key()).seal(SECRET)
    spec = {"name": "hook", "trigger": {"expect": ["a.b"]},
            "actions": [{"type": "call-webhook", "url": "https://hooks.example.com/x", "secret": sealed}]}
    async with admin.post("/api/v1/automations", json=spec) as r:
        body = await r.json()
    assert r.status == 422 and "plain text" in body["detail"], body


async def test_a_channel_password_and_credential_headers_are_sealed_and_opened_to_send(
    bus: Bus, receiver: Receiver
) -> None:
    await store.save_channel(bus, {"name": "ops", "config": {
        "kind": "webhook", "url": f"{receiver.url}/notify", "headers": {"X-Api-Key": "k-plain-9"}}})
    await store.save_channel(bus, {"name": "mail", "config": {
        "kind": "email", "host": "smtp.example.com", "sender": "a@example.com",
        "to": ["b@example.com"], "username": "a", "password": "pw-plain-77"}})
    for name, plain in (("ops", b"k-plain-9"), ("mail", b"pw-plain-77")):
        raw = await _raw(bus, bus.layout.automation_state, f"channel.{name}")
        assert plain not in raw and b"fbx1:" in raw
    await store.create_automation(bus, {
        "name": "n", "trigger": {"expect": ["shop.order.created"]},
        "actions": [{"type": "send-notification", "channel": "ops", "body": "order {{ event.data.order }}"}]})
    orch = await start(bus)
    try:
        await wait_until(lambda: _one_automation(orch))
        await bus.publish(event("shop.order.created", data={"order": "B-2"}))
        await wait_events(bus, "flowbus.automation.action.executed")
    finally:
        await orch.close()
    (sent,) = receiver.requests
    assert sent.headers["X-Api-Key"] == "k-plain-9" and sent.json()["body"] == "order B-2"


async def _one_automation(orch: Any) -> bool:
    return len(orch.orch.automations.catalog.automations) == 1


async def test_a_legacy_plain_automation_still_signs_and_is_sealed_on_its_next_write(
    bus: Bus, receiver: Receiver
) -> None:
    # The record as the store wrote it before sealing existed: the model, secrets in clear.
    spec = parse_automation({"name": "hook", "trigger": {"expect": ["shop.order.created"]},
                             "actions": [_call_webhook(f"{receiver.url}/in")]})
    now = datetime.now(UTC)
    legacy = Automation(**spec.model_dump(), id="legacy-1", created=now, updated=now)
    await (await bus.kv(bus.layout.automations)).put(legacy.id, legacy.model_dump_json().encode())
    orch = await start(bus)
    try:
        await wait_until(lambda: _one_automation(orch))
        await bus.publish(event("shop.order.created", data={"order": "L-1"}))
        await wait_events(bus, "flowbus.automation.action.executed")
    finally:
        await orch.close()
    (sent,) = receiver.requests
    assert sent.headers["Authorization"] == TOKEN
    assert verify(SECRET, sent.headers[TIMESTAMP_HEADER], sent.body, sent.headers[SIGNATURE_HEADER])
    await store.set_enabled(bus, legacy.id, False)
    raw = await _raw(bus, bus.layout.automations, legacy.id)
    assert SECRET.encode() not in raw and TOKEN.encode() not in raw


async def test_writing_a_secret_without_a_key_is_refused_naming_the_setting(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWBUS_SECRETS_KEY")
    spec = {"name": "hook", "trigger": {"expect": ["shop.order.created"]},
            "actions": [_call_webhook("https://hooks.example.com/x")]}
    with pytest.raises(SecretsKeyError, match="FLOWBUS_SECRETS_KEY"):
        await store.create_automation(bus, spec)
    assert await store.list_automations(bus) == []
    # A definition without secrets needs no key.
    made = await store.create_automation(bus, {**spec, "actions": [{"type": "do-nothing"}]})
    assert [a.id for a in await store.list_automations(bus)] == [made.id]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbus.cli", *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False)


async def test_an_orchestrator_without_a_key_refuses_to_start_when_automations_hold_secrets(
    bus: Bus, flowbus_env: dict[str, str]
) -> None:
    await store.create_automation(bus, {
        "name": "hook", "trigger": {"expect": ["a.b"]},
        "actions": [_call_webhook("https://hooks.example.com/x")]})
    env = {k: v for k, v in flowbus_env.items() if k != "FLOWBUS_SECRETS_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    done = await asyncio.to_thread(_cli, env, "orchestrator")
    assert done.returncode != 0
    assert "FLOWBUS_SECRETS_KEY" in done.stderr and "stored automations" in done.stderr, done.stderr


async def test_a_gateway_process_without_a_key_exits_naming_the_setting(
    admin: aiohttp.ClientSession, flowbus_env: dict[str, str]
) -> None:
    async with admin.post(H, json={"slug": "gh", "verifier": "github"}) as r:
        assert r.status == 201
    env = {k: v for k, v in flowbus_env.items() if k != "FLOWBUS_SECRETS_KEY"}
    env.update(PYTHONPATH=str(ROOT), FLOWBUS_GATEWAY_ADMIN_API_KEY=ADMIN_KEY)
    done = await asyncio.to_thread(_cli, env, "gateway", "--port", "0")
    assert done.returncode != 0
    assert "FLOWBUS_SECRETS_KEY" in done.stderr and "webhooks (first: 'gh')" in done.stderr, done.stderr
