"""Findings 3 and 6: webhooks name their verifier, and signed deliveries are not replayed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from events.bus import Bus
from gateway.service import running
from gateway.settings import GatewaySettings
from tests.security.conftest import ADMIN_KEY
from tests.stored import stored_events

H = "/api/v1/webhooks"
ROOT = Path(__file__).resolve().parents[2]
STRIPE_EVENT = {"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event",
                "type": "payment_intent.succeeded", "data": {"object": {"amount": 2000}}}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def _events(bus: Bus) -> list[str]:
    return [event.id for event in await stored_events(bus)]


async def _create(admin: aiohttp.ClientSession, **spec: Any) -> tuple[int, dict[str, Any]]:
    async with admin.post(H, json=spec) as r:
        return r.status, dict(await r.json())


async def test_a_webhook_without_a_verifier_is_refused_and_none_is_flagged(
    admin: aiohttp.ClientSession
) -> None:
    status, body = await _create(admin, slug="open")
    assert status == 400 and body["errors"][0]["field"] == "verifier", body
    status, body = await _create(admin, slug="open", verifier="none")
    assert status == 201 and body["unauthenticated"] is True
    status, body = await _create(admin, slug="signed", verifier="github")
    assert status == 201 and body["unauthenticated"] is False
    async with admin.get(H) as r:
        listed = {h["slug"]: h["unauthenticated"] for h in (await r.json())["items"]}
    assert listed == {"open": True, "signed": False}
    async with admin.patch(f"{H}/signed", json={"verifier": "none"}) as r:
        assert (await r.json())["unauthenticated"] is True


async def test_a_stripe_delivery_re_sent_later_with_a_re_spelt_header_is_refused(
    bus: Bus
) -> None:
    clock = Clock()
    async with running(bus, GatewaySettings(port=0, admin_api_key=ADMIN_KEY), clock=clock) as gw, \
            aiohttp.ClientSession(base_url=gw.url,
                                  headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        status, hook = await _create(admin, slug="pay", verifier="stripe")
        assert status == 201
        body = json.dumps(STRIPE_EVENT).encode()
        stamp = str(int(clock.now))
        header = f"t={stamp},v1={_sign(hook['secret'], stamp.encode() + b'.' + body)}"
        sent = {"Content-Type": "application/json", "Stripe-Signature": header}
        async with admin.post("/hooks/pay", data=body, headers=sent) as r:
            assert r.status == 202
        clock.now += 125  # past JetStream's duplicate window, inside the signature tolerance
        for respelt in (header + ",v1=00", header.replace(",", ", "), f"v1=00,{header}"):
            async with admin.post("/hooks/pay", data=body,
                                  headers={**sent, "Stripe-Signature": respelt}) as r:
                answer = await r.json()
                assert r.status == 401 and "replayed" in answer["detail"], answer
    assert await _events(bus) == [STRIPE_EVENT["id"]]


async def test_a_signed_delivery_without_a_provider_id_is_stored_once(
    admin: aiohttp.ClientSession, bus: Bus
) -> None:
    status, hook = await _create(admin, slug="gh", verifier="github")
    assert status == 201
    body = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
               "X-Hub-Signature-256": "sha256=" + _sign(hook["secret"], body)}
    ids = set()
    for _ in range(3):
        async with admin.post("/hooks/gh", data=body, headers=headers) as r:
            assert r.status == 202
            ids.update((await r.json())["ids"])
    assert len(ids) == 1
    assert await _events(bus) == list(ids)


async def test_a_signed_delivery_sent_to_two_gateway_processes_is_stored_once(
    bus: Bus, flowbus_env: dict[str, str]
) -> None:
    env = {**flowbus_env, "FLOWBUS_GATEWAY_ADMIN_API_KEY": ADMIN_KEY, "PYTHONPATH": str(ROOT)}
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowbus.cli", "gateway", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) for _ in range(2)]
    try:
        urls = [await _listening(p) for p in processes]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as s:
            async with s.post(f"{urls[0]}{H}", json={"slug": "pay", "verifier": "stripe"}) as r:
                hook = await r.json()
                assert r.status == 201, hook
            # Another provider id per delivery: only the replay bucket can catch the second.
            delivery = {**STRIPE_EVENT, "id": "evt_two_gateways"}
            body = json.dumps(delivery).encode()
            stamp = str(int(time.time()))
            header = f"t={stamp},v1={_sign(hook['secret'], stamp.encode() + b'.' + body)}"
            sent = {"Content-Type": "application/json", "Stripe-Signature": header}

            async def deliver(url: str) -> tuple[int, dict[str, Any]]:
                async with s.post(f"{url}/hooks/pay", data=body, headers=sent) as r:
                    return r.status, dict(await r.json())

            # At once, then again one after the other: accepted exactly once in all.
            answers = await asyncio.gather(*(deliver(u) for u in urls))
            answers += [await deliver(u) for u in urls]
        statuses = sorted(status for status, _ in answers)
        assert statuses == [202, 401, 401, 401], answers
        assert all("replayed" in a["detail"] for status, a in answers if status == 401)
        assert await _events(bus) == ["evt_two_gateways"]
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _listening(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if not line:
            raise AssertionError(f"the gateway did not start: {''.join(seen)}")
        seen.append(line)
        if "gateway listening on" in line:
            return line.rsplit(" ", 1)[1].strip()
