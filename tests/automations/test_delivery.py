"""Delivery: signed webhooks with retries, notifications once per event, dead letters, redrive."""

from __future__ import annotations

import json
from typing import Any

import pytest

from events import automation_store as store
from events.automations import source_of
from events.bus import MSG_ID_HEADER, Bus
from events.cloudevent import CloudEvent
from events.deployments import delete_deployment, save_deployment
from events.records import Deployment
from orchestrator.automations.http import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from orchestrator.service import Orchestrator
from tests.automations.support import Receiver, event, events_of, wait_events, wait_until

SECRET = "s3cret-s3cret-s3cret"
HEARTBEAT = 0.2  # seconds between in-progress signals while an action runs


async def automation(bus: Bus, orchestrator: Orchestrator, *actions: dict[str, Any],
                     expect: str = "shop.order.created") -> str:
    made = await store.create_automation(bus, {
        "name": "under test", "trigger": {"expect": [expect]}, "actions": list(actions),
    })

    async def known() -> bool:
        return made.id in orchestrator.automations.catalog.automations

    await wait_until(known)
    return made.id


async def redeliver(bus: Bus, ev: CloudEvent, times: int = 1) -> None:
    """Publish the same event again past JetStream's dedup, as a consumer redelivery would."""
    for n in range(times):
        await bus.publish_raw(f"{bus.layout.events_prefix}.{ev.type}", bus.encode(ev),
                              {MSG_ID_HEADER: f"again-{n}-{ev.id}"})


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "call-webhook", "url": url, "secret": SECRET,
            "body": {"order": "{{ event.data.order }}", "total": "{{ event.data.total }}"}, **extra}


async def test_a_webhook_answering_500_three_times_then_200_is_delivered_once(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500, 500, 200]
    await automation(bus, orchestrator, webhook(f"{receiver.url}/hook"))
    await bus.publish(event("shop.order.created", data={"order": "A-1", "total": 12.5}))
    (executed,) = await wait_events(bus, "flowbus.automation.action.executed")
    assert executed.data["details"]["status"] == 200
    assert len(receiver.requests) == 4
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.requests}) == 1
    last = receiver.requests[-1]
    assert last.json() == {"order": "A-1", "total": 12.5}
    assert verify(SECRET, last.headers[TIMESTAMP_HEADER], last.body, last.headers[SIGNATURE_HEADER])
    assert not verify("another-secret-value", last.headers[TIMESTAMP_HEADER], last.body,
                      last.headers[SIGNATURE_HEADER])
    assert not verify(SECRET, last.headers[TIMESTAMP_HEADER], last.body + b" ", last.headers[SIGNATURE_HEADER])


async def test_a_webhook_that_times_out_is_retried(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    receiver.delays = [1.0]
    await automation(bus, orchestrator, webhook(receiver.url, timeout_seconds=0.2))
    await bus.publish(event("shop.order.created", data={"order": "A-2", "total": 1}))
    await wait_events(bus, "flowbus.automation.action.executed")
    assert len(receiver.requests) == 2


async def test_a_redelivered_event_notifies_once(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    await store.save_channel(bus, {"name": "ops", "config": {"kind": "webhook", "url": receiver.url}})
    await automation(bus, orchestrator, {"type": "send-notification", "channel": "ops",
                                          "subject": "order {{ event.data.order }}", "body": "total {{ event.data.total }}"})
    ev = event("shop.order.created", data={"order": "A-3", "total": 7})
    await bus.publish(ev)
    await wait_events(bus, "flowbus.automation.action.executed")
    await redeliver(bus, ev, times=2)
    await bus.publish(event("ops.marker"))
    await wait_until(lambda: _handled(orchestrator, 6))  # event, triggered, executed, 2 again, marker
    assert len(receiver.requests) == 1
    payload = receiver.requests[0].json()
    assert (payload["subject"], payload["body"], payload["event"]["id"]) == ("order A-3", "total 7", ev.id)
    assert len(await events_of(bus, "flowbus.automation.triggered")) == 1


async def _handled(orchestrator: Orchestrator, count: int) -> bool:
    events = orchestrator.metrics.events
    total = sum(events.labels(k)._value.get() for k in ("matched", "unmatched"))
    return bool(total >= count)


async def test_slack_and_teams_channels_get_their_formats(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    await store.save_channel(bus, {"name": "slack", "config": {"kind": "slack", "url": f"{receiver.url}/slack"}})
    await store.save_channel(bus, {"name": "teams", "config": {"kind": "teams", "url": f"{receiver.url}/teams"}})
    await store.save_channel(bus, {"name": "legacy", "config": {"kind": "teams", "card": "messagecard",
                                                                 "url": f"{receiver.url}/legacy"}})
    note = {"subject": "Order {{ event.data.order }}", "body": "*{{ event.data.total }}* EUR"}
    await automation(bus, orchestrator, *[
        {"type": "send-notification", "channel": name, **note} for name in ("slack", "teams", "legacy")
    ])
    await bus.publish(event("shop.order.created", data={"order": "B-1", "total": 3}))
    await wait_events(bus, "flowbus.automation.action.executed", 3)
    by_path = {r.path: r.json() for r in receiver.requests}
    slack = by_path["/slack"]
    assert slack["text"] == "Order B-1\n*3* EUR"
    assert slack["blocks"][0]["text"] == {"type": "plain_text", "text": "Order B-1"}
    assert slack["blocks"][1]["text"] == {"type": "mrkdwn", "text": "*3* EUR"}
    card = by_path["/teams"]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert [b["text"] for b in card["content"]["body"]] == ["Order B-1", "*3* EUR"]
    legacy = by_path["/legacy"]
    assert (legacy["@type"], legacy["title"], legacy["text"]) == ("MessageCard", "Order B-1", "*3* EUR")


async def test_a_failing_action_is_dead_lettered_and_redriven(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    receiver.statuses = [503] * 3
    await automation(bus, orchestrator, webhook(receiver.url, max_attempts=3))
    await bus.publish(event("shop.order.created", data={"order": "C-1", "total": 2}))
    (failed,) = await wait_events(bus, "flowbus.automation.action.failed")
    assert "503" in failed.data["reason"] and failed.data["attempts"] == 3
    (letter,) = await store.list_dead_letters(bus)
    assert letter.action["type"] == "call-webhook" and "503" in letter.reason
    await store.request_redrive(bus, letter.key)
    await wait_events(bus, "flowbus.automation.action.executed")

    async def gone() -> bool:
        return not await store.list_dead_letters(bus)

    await wait_until(gone)
    assert receiver.requests[-1].json() == {"order": "C-1", "total": 2}
    assert len(receiver.requests) == 4


async def test_a_redrive_that_fails_again_publishes_its_own_failure(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    # Within JetStream's duplicate window, an event reusing the first failure's id
    # would be dropped: each redrive's outcome has an id of its own.
    receiver.statuses = [404, 404, 404]
    await automation(bus, orchestrator, webhook(receiver.url))
    await bus.publish(event("shop.order.created", data={"order": "E-1", "total": 2}))
    (first,) = await wait_events(bus, "flowbus.automation.action.failed")
    for count in (2, 3):
        (letter,) = await store.list_dead_letters(bus)
        await store.request_redrive(bus, letter.key)
        failures = await wait_events(bus, "flowbus.automation.action.failed", count)
    assert len({f.id for f in failures}) == 3 and first.id in {f.id for f in failures}
    assert {f.data["key"] for f in failures} == {first.data["key"]}
    assert len(receiver.requests) == 3
    (letter,) = await store.list_dead_letters(bus)  # still waiting for a redrive
    assert "404" in letter.reason


async def test_a_4xx_answer_is_dead_lettered_without_retries_and_can_be_purged(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    receiver.statuses = [404]
    await automation(bus, orchestrator, webhook(receiver.url))
    await bus.publish(event("shop.order.created", data={"order": "D-1", "total": 2}))
    (failed,) = await wait_events(bus, "flowbus.automation.action.failed")
    assert "404" in failed.data["reason"] and failed.data["attempts"] == 1
    assert await store.purge_dead_letters(bus) == 1
    assert await store.list_dead_letters(bus) == []


async def test_a_missing_channel_or_deployment_is_dead_lettered_with_the_reason(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    # An automation may only name an existing deployment; it is deleted afterwards.
    await save_deployment(bus, Deployment(name="ghost", flow_name="ghost"))
    await automation(bus, orchestrator,
                     {"type": "send-notification", "channel": "nowhere", "body": "x"},
                     {"type": "run-deployment", "deployment": "ghost"})
    await delete_deployment(bus, "ghost")

    async def forgotten() -> bool:
        return orchestrator.catalog.get("ghost") is None

    await wait_until(forgotten)
    await bus.publish(event("shop.order.created"))
    failed = await wait_events(bus, "flowbus.automation.action.failed", 2)
    reasons = sorted(f.data["reason"] for f in failed)
    assert "deployment 'ghost' does not exist" in reasons[0]
    assert "channel 'nowhere' not found" in reasons[1]


async def test_emit_event_publishes_the_templated_event(bus: Bus, orchestrator: Orchestrator) -> None:
    made = await automation(bus, orchestrator, {"type": "emit-event", "event": "shop.order.noted",
                                                "subject": "order.{{ event.data.n }}",
                                                "data": {"n": "{{ event.data.n }}"}})
    await bus.publish(event("shop.order.created", data={"n": 5}))
    (noted,) = await wait_events(bus, "shop.order.noted")
    assert (noted.data, noted.subject, noted.source) == ({"n": 5}, "order.5", source_of(made))


async def test_an_automation_ignores_events_its_own_actions_published(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    made = await automation(bus, orchestrator, {"type": "do-nothing"})
    await bus.publish(event("shop.order.created", source=source_of(made)))
    await bus.publish(event("shop.order.created", source="/elsewhere"))
    (triggered,) = await wait_events(bus, "flowbus.automation.triggered")
    await wait_until(lambda: _handled(orchestrator, 4))  # two events, triggered, executed
    assert triggered.data["triggering_event"]["source"] == "/elsewhere"
    assert len(await events_of(bus, "flowbus.automation.triggered")) == 1


async def test_triggered_event_names_the_automation_and_event(bus: Bus, orchestrator: Orchestrator) -> None:
    made = await automation(bus, orchestrator, {"type": "do-nothing"})
    ev = event("shop.order.created")
    await bus.publish(ev)
    (triggered,) = await wait_events(bus, "flowbus.automation.triggered")
    assert triggered.data["automation_id"] == made
    assert triggered.data["triggering_event"] == {"id": ev.id, "source": "/test", "type": ev.type}
    assert json.dumps(triggered.data)


async def test_a_template_the_sandbox_refuses_is_dead_lettered_with_the_reason(
    bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    await store.save_channel(bus, {"name": "ops", "config": {"kind": "webhook", "url": receiver.url}})
    await automation(bus, orchestrator, {"type": "send-notification", "channel": "ops",
                                          "body": "{{ event.__class__.__mro__ }}"})
    await bus.publish(event("shop.order.created"))
    (failed,) = await wait_events(bus, "flowbus.automation.action.failed")
    assert "template" in failed.data["reason"] and failed.data["attempts"] == 1
    assert receiver.requests == []


async def test_an_automation_can_pause_itself_after_firing(bus: Bus, orchestrator: Orchestrator) -> None:
    made = await automation(bus, orchestrator, {"type": "pause-automation"})
    await bus.publish(event("shop.order.created"))
    await wait_events(bus, "flowbus.automation.action.executed")
    assert (await store.get_automation(bus, made)).enabled is False

    await wait_until(lambda: _no_triggers(orchestrator))
    await bus.publish(event("shop.order.created"))
    await bus.publish(event("ops.marker"))
    await wait_until(lambda: _handled(orchestrator, 5))  # event, triggered, executed, event, marker
    assert len(await events_of(bus, "flowbus.automation.triggered")) == 1


async def _no_triggers(orchestrator: Orchestrator) -> bool:
    return len(orchestrator.automations.catalog.index) == 0


async def test_a_rejected_state_change_is_dead_lettered(bus: Bus, orchestrator: Orchestrator) -> None:
    from tests.created_runs import created_run

    await created_run(bus, "done-1", refused="parameters do not fit")  # stored Failed
    await automation(bus, orchestrator, {"type": "change-flow-run-state", "flow_run_id": "done-1",
                                          "state": "Running"})
    await bus.publish(event("shop.order.created"))
    (failed,) = await wait_events(bus, "flowbus.automation.action.failed")
    assert "Failed, a final state" in failed.data["reason"]


async def test_a_slow_action_keeps_its_event_from_being_redelivered(bus: Bus, receiver: Receiver) -> None:
    import asyncio

    from tests.automations.support import quick_settings
    from tests.orchestrator.support import fast_settings

    orch = Orchestrator(bus, fast_settings(ack_wait_seconds=1),
                        automation_settings=quick_settings(heartbeat_seconds=HEARTBEAT))
    stop = asyncio.Event()
    task = asyncio.create_task(orch.run(stop))
    try:
        await asyncio.wait_for(orch.consuming.wait(), 15)
        receiver.delays = [2.5]  # longer than the event's ack wait
        await automation(bus, orch, webhook(receiver.url, timeout_seconds=10))
        await bus.publish(event("shop.order.created", data={"order": "S-1", "total": 1}))
        await wait_events(bus, "flowbus.automation.action.executed", within=60)
        await asyncio.sleep(1.5)  # a redelivery, had there been one, would have called again
        assert len(receiver.requests) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)



async def test_a_webhook_into_a_denied_network_is_refused(bus: Bus, orchestrator: Orchestrator) -> None:
    await automation(bus, orchestrator, webhook("http://169.254.169.254/latest/meta-data"))
    await bus.publish(event("shop.order.created", data={"order": "X", "total": 0}))
    (failed,) = await wait_events(bus, "flowbus.automation.action.failed")
    assert "in denied network 169.254.0.0/16" in failed.data["reason"] and failed.data["attempts"] == 1


def test_denied_networks_are_read_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.automations.settings import AutomationSettings

    monkeypatch.setenv("FLOWBUS_AUTOMATIONS_DENIED_NETWORKS", "10.0.0.0/8, 192.168.0.0/16")
    assert AutomationSettings().denied_networks == ["10.0.0.0/8", "192.168.0.0/16"]
    monkeypatch.setenv("FLOWBUS_AUTOMATIONS_DENIED_NETWORKS", "10.0.0.0/8,not-a-net")
    with pytest.raises(ValueError, match="'not-a-net' is not a network"):
        AutomationSettings()
