"""Slack and Teams channel URLs carry the provider's token: stored sealed, opened only to
send, never shown by a listing or an error; legacy plain records still send and are
sealed on their next write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from events import automation_store as store
from events.bus import Bus
from events.errors import FlowbusError
from events.notification_channels import Channel
from tests.automations.support import Receiver, event, start, wait_events, wait_until
from tests.automations.test_cli import run

TOKEN = "T0FLOW/B0BUS/xoxb-chat-token-0123"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.close()


async def _raw(bus: Bus, name: str) -> bytes:
    entry = await (await bus.kv(bus.layout.automation_state)).get(f"channel.{name}")
    assert entry is not None, name
    return bytes(entry.value)


async def _notify(bus: Bus, channel: str, order: str, kind: str) -> list[Any]:
    """Fire a send-notification to ``channel`` through a real orchestrator; events of ``kind``."""
    await store.create_automation(bus, {
        "name": f"n-{channel}", "trigger": {"expect": [f"shop.{channel}"]},
        "actions": [{"type": "send-notification", "channel": channel, "body": "order {{ event.data.order }}"}]})
    orch = await start(bus)
    try:
        await wait_until(lambda: _loaded(orch))
        await bus.publish(event(f"shop.{channel}", data={"order": order}))
        return await wait_events(bus, kind)
    finally:
        await orch.close()


async def _loaded(orch: Any) -> bool:
    return len(orch.orch.automations.catalog.automations) >= 1


@pytest.mark.parametrize("kind", ["slack", "teams"])
async def test_a_chat_url_is_sealed_at_rest_and_opened_to_send(
    bus: Bus, receiver: Receiver, kind: str
) -> None:
    await store.save_channel(bus, {"name": "chat", "config": {
        "kind": kind, "url": f"{receiver.url}/services/{TOKEN}"}})
    raw = await _raw(bus, "chat")
    assert TOKEN.encode() not in raw and b"fbx1:" in raw
    await _notify(bus, "chat", "C-1", "flowbus.automation.action.executed")
    (sent,) = receiver.requests
    assert sent.path == f"/services/{TOKEN}" and "C-1" in sent.body.decode()


async def test_a_failed_send_names_the_host_not_the_token(bus: Bus, receiver: Receiver) -> None:
    receiver.statuses = [404]
    await store.save_channel(bus, {"name": "chat", "config": {
        "kind": "slack", "url": f"{receiver.url}/services/{TOKEN}"}})
    [failed] = await _notify(bus, "chat", "C-2", "flowbus.automation.action.failed")
    assert "answered 404" in str(failed.data) and TOKEN not in str(failed.data)
    [letter] = await store.list_dead_letters(bus)
    assert "answered 404" in letter.reason and TOKEN not in letter.model_dump_json()


async def test_a_legacy_plain_chat_url_still_sends_and_is_sealed_on_its_next_write(
    bus: Bus, receiver: Receiver
) -> None:
    # The record as the store wrote it before chat URLs were sealed: the model, URL in clear.
    legacy = Channel.model_validate({"name": "old", "config": {
        "kind": "teams", "url": f"{receiver.url}/webhook/{TOKEN}"}})
    kv = await bus.kv(bus.layout.automation_state)
    await kv.put("channel.old", legacy.model_dump_json().encode())
    await _notify(bus, "old", "L-1", "flowbus.automation.action.executed")
    (sent,) = receiver.requests
    assert sent.path == f"/webhook/{TOKEN}"
    await store.save_channel(bus, legacy.model_dump(mode="json"))
    assert TOKEN.encode() not in await _raw(bus, "old")


async def test_the_cli_lists_a_chat_channel_by_host_only(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    await store.save_channel(bus, {"name": "oncall", "config": {
        "kind": "slack", "url": f"https://hooks.slack.com/services/{TOKEN}"}})
    listed = await run("channel", "ls", env=flowbus_env)
    assert listed.returncode == 0 and "https://hooks.slack.com/..." in listed.stdout
    assert TOKEN not in listed.stdout
    # Without the key, the listing says the URL is sealed (and still shows no token).
    no_key = {k: v for k, v in flowbus_env.items() if k != "FLOWBUS_SECRETS_KEY"}
    listed = await run("channel", "ls", env=no_key)
    assert listed.returncode == 0 and "(sealed)" in listed.stdout and TOKEN not in listed.stdout


async def test_a_bad_chat_url_is_refused_without_quoting_it(bus: Bus) -> None:
    with pytest.raises(FlowbusError) as caught:
        await store.save_channel(bus, {"name": "bad", "config": {
            "kind": "slack", "url": f"ftp://hooks.slack.com/services/{TOKEN}"}})
    assert "not an http(s) URL" in str(caught.value) and TOKEN not in str(caught.value)
