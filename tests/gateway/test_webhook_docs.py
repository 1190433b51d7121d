"""docs/webhooks.md, run: its `flowbus webhook` commands against a real gateway, each
provider's signed delivery, the events they make; and the webhook CLI's other verbs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result
from gateway_helpers import stored_events

from events.bus import Bus
from flowbus.cli import cli
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def create_commands() -> dict[str, list[str]]:
    out = {}
    for block in doc_blocks("bash"):
        for line in block.splitlines():
            if line.startswith("flowbus webhook create "):
                args = shlex.split(line)[1:]
                out[args[2]] = args
    return out


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw:
        yield gw


async def flowbus(gw: RunningGateway, *args: str) -> Result:
    env = {"FLOWBUS_API_URL": gw.url + "/api/v1"}
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env,
                                   catch_exceptions=False)


def secret_of(result: Result) -> str:
    assert result.exit_code == 0, result.output
    found = re.search(r"secret\s+(\S+)\s+\(shown once", result.output)
    assert found is not None, result.output
    return found.group(1)


def sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def test_every_documented_example_makes_the_documented_event(
    gateway: RunningGateway, bus: Bus
) -> None:
    commands = create_commands()
    assert sorted(commands) == ["github", "orders", "slack", "stripe"]
    secrets = {slug: secret_of(await flowbus(gateway, *args)) for slug, args in commands.items()}
    hooks = f"{gateway.url}/hooks"
    now = str(int(time.time()))
    async with aiohttp.ClientSession() as http:
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        async with http.post(f"{hooks}/github", data=body, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "push",
                "X-GitHub-Delivery": "d-1",
                "X-Hub-Signature-256": "sha256=" + sign(secrets["github"], body)}) as r:
            assert r.status == 202, await r.text()
        body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()
        stripe_sig = sign(secrets["stripe"], now.encode() + b"." + body)
        async with http.post(f"{hooks}/stripe", data=body, headers={
                "Content-Type": "application/json",
                "Stripe-Signature": f"t={now},v1={stripe_sig}"}) as r:
            assert r.status == 202, await r.text()
        challenge = json.dumps({"type": "url_verification", "challenge": "c-42"}).encode()
        body = json.dumps({"type": "event_callback", "event_id": "Ev1",
                           "event": {"type": "message", "text": "hi"}}).encode()
        for payload in (challenge, body):
            slack_sig = "v0=" + sign(secrets["slack"], b"v0:" + now.encode() + b":" + payload)
            async with http.post(f"{hooks}/slack", data=payload, headers={
                    "Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                    "X-Slack-Signature": slack_sig}) as r:
                answer = await r.text()
                assert r.status in (200, 202), answer
                if payload is challenge:
                    assert "c-42" in answer
        unsigned = json.dumps({"order": {"id": 1}}).encode()
        async with http.post(f"{hooks}/orders", data=unsigned,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 401  # no signature, no event
    # The generic sender, exactly as the page writes it.
    [snippet] = doc_blocks("python")
    await asyncio.to_thread(exec, snippet, {"SECRET": secrets["orders"], "URL": f"{hooks}/orders"})
    events = {e.type: e for e in await stored_events(bus)}
    assert events["com.github.push"].data == {"ref": "refs/heads/main"}
    assert events["com.stripe.payment_intent.succeeded"].id == "evt_1"
    assert events["com.slack.message"].data["event"]["text"] == "hi"
    assert events["com.example.order"].data == {"id": 7, "total": 12.5}
    assert events["com.github.push"].source == "flowbus/webhooks/github"
    assert len(events) == 4


async def test_ls_show_rotate_and_rm(gateway: RunningGateway) -> None:
    first = secret_of(await flowbus(gateway, "webhook", "create", "orders", "--verifier", "hmac",
                                    "--signature-header", "X-Signature"))
    listed = await flowbus(gateway, "webhook", "ls")
    assert listed.exit_code == 0 and "orders" in listed.output and "hmac" in listed.output
    assert first not in listed.output
    shown = await flowbus(gateway, "webhook", "show", "orders")
    assert shown.exit_code == 0 and f"{gateway.url}/hooks/orders" in shown.output
    assert "header X-Signature" in shown.output and first not in shown.output
    rotated = await flowbus(gateway, "webhook", "rotate-secret", "orders")
    assert rotated.exit_code == 0
    second = rotated.output.split(": ", 1)[1].split()[0]
    body = b'{"a": 1}'
    async with aiohttp.ClientSession() as http:
        for secret, status in ((first, 401), (second, 202)):
            async with http.post(f"{gateway.url}/hooks/orders", data=body, headers={
                    "Content-Type": "application/json", "X-Signature": sign(secret, body)}) as r:
                assert r.status == status, await r.text()
        removed = await flowbus(gateway, "webhook", "rm", "orders")
        assert removed.exit_code == 0
        async with http.post(f"{gateway.url}/hooks/orders", data=body) as r:
            assert r.status == 404


@pytest.mark.parametrize("args", [
    ["webhook", "create", "Bad Slug"],
    ["webhook", "create", "x", "--verifier", "hmac"],
    ["webhook", "create", "x", "--template-json", "[1]"],
    ["webhook", "create", "x", "--type", "{{ nope("],
    ["webhook", "show", "missing"],
    ["webhook", "rm", "../../etc"],
])
async def test_bad_input_is_a_clear_error(gateway: RunningGateway, args: list[str]) -> None:
    result = await flowbus(gateway, *args)
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output and "Error" in result.output
