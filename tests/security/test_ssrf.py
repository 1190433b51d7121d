"""Finding 5: automation webhooks cannot reach loopback, private or metadata addresses
by any spelling (real orchestrator, real receiver on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from events import automation_store as store
from events.bus import Bus
from orchestrator.automations.targets import DEFAULT_DENIED, TargetPolicy
from tests.automations.support import Receiver, event, start, wait_events, wait_until


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.close()


async def test_loopback_in_any_spelling_is_refused_by_default(bus: Bus, receiver: Receiver) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    running = await start(bus, allowed_networks=[])  # the production default: no exception
    try:
        urls = [f"http://[::ffff:127.0.0.1]:{port}/a", f"http://127.1:{port}/b",
                f"http://2130706433:{port}/c", f"http://0177.0.0.1:{port}/d",
                f"http://localhost:{port}/e", f"{receiver.url}/f"]
        made = await store.create_automation(bus, {
            "name": "ssrf", "trigger": {"expect": ["shop.x"]},
            "actions": [{"type": "call-webhook", "url": u, "max_attempts": 1} for u in urls]})

        async def known() -> bool:
            return made.id in running.orch.automations.catalog.automations

        await wait_until(known)
        await bus.publish(event("shop.x"))
        failed = await wait_events(bus, "flowbus.automation.action.failed", len(urls))
    finally:
        await running.close()
    assert all("denied network 127.0.0.0/8" in f.data["reason"] or "::1/128" in f.data["reason"]
               for f in failed), [f.data["reason"] for f in failed]
    assert receiver.requests == []


@pytest.mark.parametrize(("address", "network"), [
    ("::ffff:169.254.169.254", "169.254.0.0/16"), ("::ffff:127.0.0.1", "127.0.0.0/8"),
    ("::", "::/128"), ("fd00:ec2::254", "fc00::/7"), ("::169.254.169.254", "169.254.0.0/16"),
    ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"), ("2002:a9fe:a9fe::", "169.254.0.0/16"),
    ("10.1.2.3", "10.0.0.0/8"), ("fe80::1%eth0", "fe80::/10"),
])
def test_every_spelling_is_normalised_before_the_check(address: str, network: str) -> None:
    assert TargetPolicy(DEFAULT_DENIED, []).denied_by(address) == network


def test_the_allow_list_opens_an_exception() -> None:
    policy = TargetPolicy(DEFAULT_DENIED, ["10.1.2.0/24"])
    assert policy.denied_by("10.1.2.3") is None and policy.denied_by("10.9.9.9") == "10.0.0.0/8"
    assert policy.denied_by("93.184.215.14") is None
