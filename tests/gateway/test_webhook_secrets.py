"""A webhook's secret given by its owner, through the API: checked at the door, write-only."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp
import pytest
from gateway_helpers import problem

from events.webhook_rules import SLUG_PATTERN, VERIFIER_NAMES
from gateway.signatures import Verifier
from gateway.webhooks import WebhookCreate

OWN = "whsec_" + "0123456789abcdef" * 2
MASK = "*" * 16


def sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def post_signed(client: aiohttp.ClientSession, slug: str, secret: str) -> int:
    body = b'{"a": 1}'
    async with client.post(f"/hooks/{slug}", data=body, headers={
            "Content-Type": "application/json", "X-Signature": sign(secret, body)}) as r:
        return r.status


HOOK = {"slug": "own", "verifier": "hmac", "signature_header": "X-Signature"}


async def test_an_owners_secret_signs_and_is_never_shown(client: aiohttp.ClientSession) -> None:
    async with client.post("/api/v1/webhooks", json={**HOOK, "secret": OWN}) as r:
        made = await r.json()
        assert r.status == 201, made
        assert made["secret"] == MASK and OWN not in await r.text()
    assert await post_signed(client, "own", OWN) == 202
    for path in ("/api/v1/webhooks", "/api/v1/webhooks/own"):
        async with client.get(path) as r:
            text = await r.text()
            assert r.status == 200 and OWN not in text and '"secret"' not in text
    rolled = "r0lled-" + "x" * 20
    async with client.post("/api/v1/webhooks/own/rotate-secret", json={"secret": rolled}) as r:
        answer = await r.json()
        assert r.status == 200 and answer["secret"] == MASK, answer
    assert await post_signed(client, "own", OWN) == 401
    assert await post_signed(client, "own", rolled) == 202
    # Without a body, rotate-secret still makes (and shows once) a new one.
    async with client.post("/api/v1/webhooks/own/rotate-secret") as r:
        made_here = (await r.json())["secret"]
        assert r.status == 200 and made_here != MASK and len(made_here) >= 16
    assert await post_signed(client, "own", made_here) == 202


@pytest.mark.parametrize(("secret", "expected"), [
    ("short", "at least 16"),
    ("", "at least 16"),
    ("x" * 513, "over 512"),
    ("spaces are not ok here", "printable ASCII"),
    ("line\nbreak-0123456789", "printable ASCII"),
    ("non-ascii-é-0123456789", "printable ASCII"),
    (12345678901234567890, "secret"),
    (["a" * 20], "secret"),
    ({"$gt": ""}, "secret"),
])
async def test_unfit_secrets_are_refused_naming_the_field(
    client: aiohttp.ClientSession, secret: Any, expected: str
) -> None:
    async with client.post("/api/v1/webhooks", json={**HOOK, "secret": secret}) as r:
        assert r.status == 400, await r.text()
        detail = problem(await r.json())
        assert expected in detail and "'secret'" in detail
    async with client.get("/api/v1/webhooks/own") as r:
        assert r.status == 404  # nothing was created
    async with client.post("/api/v1/webhooks", json=HOOK) as r:
        assert r.status == 201
    async with client.post("/api/v1/webhooks/own/rotate-secret", json={"secret": secret}) as r:
        assert r.status == 400, await r.text()
        assert expected in problem(await r.json())
    async with client.delete("/api/v1/webhooks/own") as r:
        assert r.status == 204


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b'{"secret": "' + b"a" * 20 + b'", "extra": 1}', "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"not json", "application/json", 400),
    (b'{"secret": "' + b"a" * 20 + b'"}', "text/plain", 415),
    (b'{"secret": "' + b"a" * 200_000 + b'"}', "application/json", 400),
])
async def test_rotate_secret_meets_hostile_bodies(
    client: aiohttp.ClientSession, body: bytes, content_type: str, status: int
) -> None:
    async with client.post("/api/v1/webhooks", json=HOOK) as r:
        made = (await r.json())["secret"]
    async with client.post("/api/v1/webhooks/own/rotate-secret", data=body,
                           headers={"Content-Type": content_type}) as r:
        assert r.status in (status, 413), await r.text()
    assert await post_signed(client, "own", made) == 202  # the secret did not change


async def test_a_given_secret_needs_the_admin_scope(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.post("/api/v1/webhooks", json={**HOOK, "secret": OWN}) as r:
        assert r.status == 401


def test_the_gateway_and_the_cli_share_the_webhook_rules() -> None:
    assert tuple(v.value for v in Verifier) == VERIFIER_NAMES
    assert WebhookCreate.model_fields["slug"].metadata[0].pattern == SLUG_PATTERN
