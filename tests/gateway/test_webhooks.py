"""Webhooks: real-shaped GitHub, Stripe and Slack deliveries signed as those services sign them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from gateway_helpers import problem, stored_events

from events.bus import Bus

GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "0000000000000000000000000000000000000000",
    "repository": {"id": 1296269, "full_name": "octocat/Hello-World", "private": False},
    "pusher": {"name": "octocat", "email": "octocat@github.com"},
    "commits": [{"id": "abc", "message": "Update README", "distinct": True}],
}


def sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def create_hook(client: aiohttp.ClientSession, **spec: Any) -> str:
    spec.setdefault("verifier", "none")  # a verifier must be named; these tests sign nothing
    async with client.post("/api/v1/webhooks", json=spec) as r:
        body = await r.json()
        assert r.status == 201, body
        return str(body["secret"])


async def deliver(client: aiohttp.ClientSession, slug: str, body: bytes, headers: dict[str, str],
                  method: str = "POST", **kw: Any) -> tuple[int, Any]:
    async with client.request(method, f"/hooks/{slug}", data=body, headers=headers, **kw) as r:
        return r.status, await r.json(content_type=None)


def github_headers(secret: str, body: bytes, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "292430182", "X-Hub-Signature-256": "sha256=" + sign(secret, body),
    }


GITHUB_TEMPLATE = {
    "type": "com.github.{{ headers['x-github-event'] }}",
    "source": "https://github.com/{{ body.repository.full_name }}",
    "subject": "{{ body.ref }}",
    "data": "{{ body }}",
    "extensions": {"commits": "{{ body.commits | length }}"},
}


async def test_github_push_becomes_a_typed_event_with_the_delivery_id(client: aiohttp.ClientSession, bus: Bus) -> None:
    secret = await create_hook(client, slug="gh", verifier="github", template=GITHUB_TEMPLATE)
    body = json.dumps(GITHUB_PUSH).encode()
    delivery = str(uuid.uuid4())
    status, answer = await deliver(client, "gh", body, github_headers(secret, body, delivery))
    assert (status, answer) == (202, {"ids": [delivery]})
    [event] = await stored_events(bus)
    assert event.type == "com.github.push"
    assert event.source == "https://github.com/octocat/Hello-World"
    assert event.subject == "refs/heads/main" and event.data == GITHUB_PUSH
    assert event.extensions == {"commits": 1}  # a single expression keeps its type


async def test_redelivered_github_webhook_is_stored_once(client: aiohttp.ClientSession, bus: Bus) -> None:
    secret = await create_hook(client, slug="gh", verifier="github", template=GITHUB_TEMPLATE)
    body = json.dumps(GITHUB_PUSH).encode()
    headers = github_headers(secret, body, str(uuid.uuid4()))
    for _ in range(2):
        assert (await deliver(client, "gh", body, headers))[0] == 202
    assert len(await stored_events(bus)) == 1


@pytest.mark.parametrize("signature", ["sha256=" + "0" * 64, "sha1=abc", ""])
async def test_github_with_a_wrong_signature_is_401(client: aiohttp.ClientSession, bus: Bus, signature: str) -> None:
    secret = await create_hook(client, slug="gh", verifier="github")
    body = json.dumps(GITHUB_PUSH).encode()
    headers = github_headers(secret, body, "d1")
    headers["X-Hub-Signature-256"] = signature
    status, answer = await deliver(client, "gh", body, headers)
    assert status == 401 and "X-Hub-Signature-256" in problem(answer)
    assert await stored_events(bus) == []


async def test_github_body_changed_after_signing_is_401(client: aiohttp.ClientSession) -> None:
    secret = await create_hook(client, slug="gh", verifier="github")
    body = json.dumps(GITHUB_PUSH).encode()
    headers = github_headers(secret, body, "d1")
    status, _ = await deliver(client, "gh", body.replace(b"main", b"evil"), headers)
    assert status == 401


STRIPE_EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event", "api_version": "2022-11-15",
    "created": 1686089970, "type": "payment_intent.succeeded", "livemode": False,
    "data": {"object": {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent",
                        "amount": 2000, "currency": "usd", "status": "succeeded"}},
}


def stripe_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    signed = sign(secret, f"{timestamp}.".encode() + body)
    return {"Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": f"t={timestamp},v1={signed},v0={'1' * 64}"}


STRIPE_TEMPLATE = {"type": "com.stripe.{{ body.type }}", "subject": "{{ body.data.object.id }}",
                   "data": "{{ body.data.object }}"}


async def test_stripe_event_is_accepted_with_its_event_id(client: aiohttp.ClientSession, bus: Bus, clock: Any) -> None:
    secret = await create_hook(client, slug="stripe", verifier="stripe", template=STRIPE_TEMPLATE)
    body = json.dumps(STRIPE_EVENT).encode()
    status, answer = await deliver(client, "stripe", body, stripe_headers(secret, body, int(clock.now)))
    assert (status, answer) == (202, {"ids": [STRIPE_EVENT["id"]]})
    [event] = await stored_events(bus)
    assert event.type == "com.stripe.payment_intent.succeeded"
    assert event.data["amount"] == 2000 and event.subject == "pi_3MtwBwLkdIwHu7ix28a3tqPa"


async def test_stripe_stale_timestamp_is_refused(client: aiohttp.ClientSession, clock: Any) -> None:
    secret = await create_hook(client, slug="stripe", verifier="stripe")
    body = json.dumps(STRIPE_EVENT).encode()
    status, answer = await deliver(client, "stripe", body, stripe_headers(secret, body, int(clock.now) - 301))
    assert status == 401 and "tolerance" in problem(answer)


async def test_stripe_replayed_signature_is_refused(client: aiohttp.ClientSession, clock: Any) -> None:
    secret = await create_hook(client, slug="stripe", verifier="stripe")
    body = json.dumps(STRIPE_EVENT).encode()
    headers = stripe_headers(secret, body, int(clock.now))
    assert (await deliver(client, "stripe", body, headers))[0] == 202
    status, answer = await deliver(client, "stripe", body, headers)
    assert status == 401 and "replayed" in problem(answer)


@pytest.mark.parametrize("header", ["t=1", "v1=abc", "t=abc,v1=" + "0" * 64, "garbage"])
async def test_stripe_malformed_signature_header_is_401(client: aiohttp.ClientSession, header: str) -> None:
    await create_hook(client, slug="stripe", verifier="stripe")
    status, _ = await deliver(client, "stripe", b"{}", {"Content-Type": "application/json",
                                                        "Stripe-Signature": header})
    assert status == 401


def slack_headers(secret: str, body: bytes, timestamp: int, content_type: str) -> dict[str, str]:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": "v0=" + sign(secret, base)}


SLASH_COMMAND = {"token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0001", "team_domain": "example",
                 "channel_id": "C2147483705", "user_id": "U2147483697", "user_name": "Steve",
                 "command": "/deploy", "text": "prod now", "response_url": "https://hooks.slack.com/commands/1234/5678",
                 "trigger_id": "13345224609.738474920.8088930838d88f008e0"}


async def test_slack_slash_command_form_is_mapped(client: aiohttp.ClientSession, bus: Bus, clock: Any) -> None:
    template = {"type": "com.slack.command", "subject": "{{ body.command }}",
                "data": {"args": "{{ body.text.split() }}", "user": "{{ body.user_name }}"}}
    secret = await create_hook(client, slug="slack", verifier="slack", template=template)
    body = urlencode(SLASH_COMMAND).encode()
    headers = slack_headers(secret, body, int(clock.now), "application/x-www-form-urlencoded")
    status, answer = await deliver(client, "slack", body, headers)
    assert (status, answer) == (202, {"ids": [SLASH_COMMAND["trigger_id"]]})
    [event] = await stored_events(bus)
    assert event.subject == "/deploy" and event.data == {"args": ["prod", "now"], "user": "Steve"}


async def test_slack_events_api_callback_uses_its_event_id(client: aiohttp.ClientSession, bus: Bus, clock: Any) -> None:
    secret = await create_hook(client, slug="slack", verifier="slack",
                               template={"type": "com.slack.{{ body.event.type }}"})
    payload = {"token": "x", "team_id": "T1", "type": "event_callback", "event_id": "Ev08MFMKH6",
               "event_time": 1234567890, "event": {"type": "app_mention", "text": "<@U0LAN0Z89> hi"}}
    body = json.dumps(payload).encode()
    status, answer = await deliver(client, "slack", body,
                                   slack_headers(secret, body, int(clock.now), "application/json"))
    assert (status, answer) == (202, {"ids": ["Ev08MFMKH6"]})
    [event] = await stored_events(bus)
    assert event.type == "com.slack.app_mention" and event.data == payload


async def test_slack_url_verification_is_answered_not_published(client: aiohttp.ClientSession, bus: Bus, clock: Any) -> None:
    secret = await create_hook(client, slug="slack", verifier="slack")
    body = json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "url_verification",
                       "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}).encode()
    headers = slack_headers(secret, body, int(clock.now), "application/json")
    status, answer = await deliver(client, "slack", body, headers)
    assert (status, answer) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    assert await stored_events(bus) == []
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    assert (await deliver(client, "slack", body, headers))[0] == 401


async def test_slack_stale_timestamp_and_bad_signature_are_refused(client: aiohttp.ClientSession, clock: Any) -> None:
    secret = await create_hook(client, slug="slack", verifier="slack")
    body = b"command=%2Fx"
    form = "application/x-www-form-urlencoded"
    stale = slack_headers(secret, body, int(clock.now) - 600, form)
    assert (await deliver(client, "slack", body, stale))[0] == 401
    wrong = slack_headers("not-the-secret", body, int(clock.now), form)
    assert (await deliver(client, "slack", body, wrong))[0] == 401
    missing = {"Content-Type": form, "X-Slack-Signature": "v0=00"}
    status, answer = await deliver(client, "slack", body, missing)
    assert status == 401 and "X-Slack-Request-Timestamp" in problem(answer)


async def test_generic_hmac_in_a_named_header(client: aiohttp.ClientSession, bus: Bus) -> None:
    secret = await create_hook(client, slug="generic", verifier="hmac", signature_header="X-Signature",
                               template={"type": "com.acme.order", "data": {"n": "{{ body.count }}"}})
    body = b'{"count": 3}'
    headers = {"Content-Type": "application/json", "X-Signature": sign(secret, body)}
    assert (await deliver(client, "generic", body, headers))[0] == 202
    headers["X-Signature"] = sign("wrong", body)
    assert (await deliver(client, "generic", body, headers))[0] == 401
    [event] = await stored_events(bus)
    assert event.data == {"n": 3}


async def test_a_cloudevent_sent_to_a_webhook_passes_through(client: aiohttp.ClientSession, bus: Bus) -> None:
    await create_hook(client, slug="open")
    ce = {"specversion": "1.0", "id": "c1", "source": "/x", "type": "com.example.passed",
          "data": {"a": 1}}
    status, answer = await deliver(client, "open", json.dumps(ce).encode(),
                                   {"Content-Type": "application/cloudevents+json"})
    assert (status, answer) == (202, {"ids": ["c1"]})
    [event] = await stored_events(bus)
    assert (event.type, event.source, event.data) == ("com.example.passed", "/x", {"a": 1})


async def test_get_maps_the_query_string(client: aiohttp.ClientSession, bus: Bus) -> None:
    await create_hook(client, slug="ping", template={"type": "com.acme.ping", "data": "{{ query }}",
                                                     "subject": "{{ method }}"})
    async with client.get("/hooks/ping", params={"host": "db1", "ok": "1"}) as r:
        assert r.status == 202
    [event] = await stored_events(bus)
    assert event.data == {"host": "db1", "ok": "1"} and event.subject == "GET"


async def test_plain_text_body_is_text_in_the_template(client: aiohttp.ClientSession, bus: Bus) -> None:
    await create_hook(client, slug="txt", template={"type": "com.acme.text", "data": "{{ body | upper }}"})
    status, _ = await deliver(client, "txt", b"hello", {"Content-Type": "text/plain"}, method="PUT")
    assert status == 202
    [event] = await stored_events(bus)
    assert event.data == "HELLO"


async def test_unknown_webhook_is_404(client: aiohttp.ClientSession) -> None:
    for slug in ("nope", "a*b", "..", "x" * 300):
        status, _ = await deliver(client, slug, b"{}", {"Content-Type": "application/json"})
        assert status == 404


async def test_disabled_webhook_is_404(client: aiohttp.ClientSession) -> None:
    await create_hook(client, slug="off")
    async with client.patch("/api/v1/webhooks/off", json={"enabled": False}) as r:
        assert r.status == 200 and (await r.json())["enabled"] is False
    status, _ = await deliver(client, "off", b"{}", {"Content-Type": "application/json"})
    assert status == 404


async def test_malformed_json_body_is_400(client: aiohttp.ClientSession) -> None:
    await create_hook(client, slug="j")
    status, answer = await deliver(client, "j", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in problem(answer)


async def test_template_failing_on_the_request_is_400_naming_the_webhook(client: aiohttp.ClientSession) -> None:
    await create_hook(client, slug="t", template={"type": "com.x.{{ body.kind }}"})
    status, answer = await deliver(client, "t", b"{}", {"Content-Type": "application/json"})
    assert status == 400 and "'t'" in problem(answer)
    status, answer = await deliver(client, "t", b'{"kind": "a b"}', {"Content-Type": "application/json"})
    assert status == 400 and answer["attribute"] == "type"


async def test_hostile_template_is_refused_by_the_sandbox(client: aiohttp.ClientSession) -> None:
    await create_hook(client, slug="evil",
                      template={"type": "a.b", "data": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})
    status, _ = await deliver(client, "evil", b"{}", {"Content-Type": "application/json"})
    assert status == 400


async def test_oversized_webhook_body_is_413(start_gateway: Any, client: aiohttp.ClientSession) -> None:
    await create_hook(client, slug="big")
    async with start_gateway(request_max_bytes=1024) as gw, aiohttp.ClientSession(base_url=gw.url) as s:
        async with s.post("/hooks/big", data=b"x" * 2048, headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 413


async def test_secret_is_shown_once(client: aiohttp.ClientSession) -> None:
    await create_hook(client, slug="s1")
    async with client.get("/api/v1/webhooks/s1") as r:
        assert "secret" not in await r.json()
    async with client.get("/api/v1/webhooks") as r:
        assert all("secret" not in h for h in (await r.json())["items"])
    async with client.post("/api/v1/webhooks/s1/rotate-secret") as r:
        assert r.status == 200 and len((await r.json())["secret"]) > 30


@pytest.mark.parametrize("spec", [
    {"slug": "Bad Slug"},
    {"slug": "h", "verifier": "hmac"},
    {"slug": "h", "template": {"data": 1}},
    {"slug": "h", "template": {"type": "{{ oops"}},
    {"slug": "h", "template": {"type": "a.b", "colour": "red"}},
    {"slug": "h", "verifier": "md5"},
])
async def test_bad_webhook_definitions_are_400(client: aiohttp.ClientSession, spec: dict[str, Any]) -> None:
    async with client.post("/api/v1/webhooks", json=spec) as r:
        assert r.status == 400, await r.text()
        assert problem(await r.json(content_type=None))


async def test_duplicate_webhook_is_409_and_delete_is_404_after(client: aiohttp.ClientSession) -> None:
    await create_hook(client, slug="dup")
    async with client.post("/api/v1/webhooks", json={"slug": "dup", "verifier": "none"}) as r:
        assert r.status == 409
    async with client.delete("/api/v1/webhooks/dup") as r:
        assert r.status == 204
    async with client.delete("/api/v1/webhooks/dup") as r:
        assert r.status == 404


async def test_each_webhook_is_rate_limited(start_gateway: Any, client: aiohttp.ClientSession, clock: Any) -> None:
    await create_hook(client, slug="busy")
    await create_hook(client, slug="quiet")
    async with start_gateway(rate_limit_per_second=1, rate_limit_burst=1) as gw, \
            aiohttp.ClientSession(base_url=gw.url) as s:
        async with s.post("/hooks/busy", json={}) as r:
            assert r.status == 202
        async with s.post("/hooks/busy", json={}) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1"
        async with s.post("/hooks/quiet", json={}) as r:
            assert r.status == 202
        clock.advance(1)
        async with s.post("/hooks/busy", json={}) as r:
            assert r.status == 202
