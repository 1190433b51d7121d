"""Automation and channel definitions: refused at creation with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from events import automation_store as store
from events.automations import InvalidAutomation, parse_automation
from events.bus import Bus
from events.errors import NotFound
from events.notification_channels import parse_channel

BASE: dict[str, Any] = {"name": "a", "trigger": {"expect": ["shop.order.created"]},
                        "actions": [{"type": "do-nothing"}]}


def with_(**change: Any) -> dict[str, Any]:
    return {**BASE, **change}


@pytest.mark.parametrize(("definition", "named"), [
    ({"trigger": BASE["trigger"], "actions": BASE["actions"]}, "name"),
    (with_(actions=[]), "actions"),
    (with_(actions=[{"type": "launch-missiles"}]), "actions.0"),
    (with_(actions=[{"deployment": "x"}]), "actions.0"),
    (with_(actions=["run it"]), "actions.0"),
    (with_(actions=[{"type": "run-deployment", "deployment": "x", "parameters": {"a": "{{ event.data."}}]),
     "actions.0.parameters"),
    (with_(actions=[{"type": "send-notification", "channel": "c", "body": "{% for %}"}]), "actions.0.body"),
    (with_(actions=[{"type": "send-notification", "channel": "c"}]), "actions.0.body"),
    (with_(actions=[{"type": "call-webhook", "url": "file:///etc/passwd"}]), "actions.0.url"),
    (with_(actions=[{"type": "call-webhook", "url": "http://x", "secret": "short"}]), "actions.0.secret"),
    (with_(actions=[{"type": "call-webhook", "url": "http://x", "headers": {"X-A": "1\r\nEvil: 1"}}]),
     "actions.0.headers"),
    (with_(actions=[{"type": "change-flow-run-state", "state": "Exploded"}]), "actions.0.state"),
    (with_(actions=[{"type": "emit-event", "event": "bad..type"}]), "actions.0.event"),
    (with_(actions=[{"type": "run-deployment", "deployment": "../etc"}]), "actions.0.deployment"),
    (with_(actions=[{"type": "retry-flow-run", "max_attempts": 0}]), "actions.0.max_attempts"),
    (with_(actions=[{"type": "do-nothing", "extra": 1}]), "actions.0.extra"),
    (with_(trigger={"expect": ["a"], "posture": "Sideways"}), "trigger.posture"),
    (with_(trigger={"type": "wormhole"}), "trigger"),
    (with_(trigger="always"), "trigger"),
    (with_(trigger={"expect": ["a"], "debounce": {"seconds": -1}}), "trigger.debounce.seconds"),
    (with_(trigger={"expect": ["a"], "batch": {"size": 10**6, "seconds": 1}}), "trigger.batch.size"),
    (with_(trigger={"expect": ["a"], "when": "event.data.x >"}), "trigger.when"),
    (with_(colour="red"), "colour"),
    (with_(actions=[{"type": "do-nothing"}] * 51), "actions"),
])
def test_malformed_definitions_are_refused_naming_the_field(definition: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidAutomation) as caught:
        parse_automation(definition)
    assert f"automation {named}:" in str(caught.value), str(caught.value)


def test_an_oversized_definition_is_refused() -> None:
    with pytest.raises(InvalidAutomation, match="over 262144"):
        parse_automation(with_(description="x" * 300_000))


def test_a_hostile_template_is_refused_or_fails_safely() -> None:
    with pytest.raises(InvalidAutomation, match=r"actions\.0\.body"):
        parse_automation(with_(actions=[{"type": "send-notification", "channel": "c", "body": "{{ x" * 20_000}]))
    # compiles, but the sandbox refuses it at render time (the action is dead-lettered)
    parse_automation(with_(actions=[{"type": "send-notification", "channel": "c",
                                     "body": "{{ ''.__class__.__mro__ }}"}]))


def test_a_definition_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidAutomation, match="an automation is an object, not list"):
        parse_automation([1, 2])


def test_flow_control_is_one_kind_and_reactive_only() -> None:
    with pytest.raises(InvalidAutomation, match="not debounce and throttle"):
        parse_automation(with_(trigger={"expect": ["a"], "debounce": {"seconds": 1},
                                        "throttle": {"limit": 1, "seconds": 1}}))
    with pytest.raises(InvalidAutomation, match="Reactive triggers only"):
        parse_automation(with_(trigger={"expect": ["a"], "posture": "Proactive", "within": 5,
                                        "batch": {"size": 2, "seconds": 1}}))


def test_actions_on_resolve_need_a_proactive_trigger() -> None:
    with pytest.raises(InvalidAutomation, match="actions_on_resolve need a Proactive trigger"):
        parse_automation(with_(actions_on_resolve=[{"type": "do-nothing"}]))


# --- loop guard -----------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", [
    {"expect": ["flowbus.flow-run.Running"], "match": {"data.deployment_name": "etl"}},
    {"expect": ["flowbus.flow-run.*"]},
    {"expect": ["flowbus.flow-run.Failed"], "match": {"data.deployment_name": "et*"}},
    {"expect": ["flowbus.flow-run.Completed"], "match": {"data.deployment_name": "!other"}},
    {"type": "compound", "require": "any", "triggers": [{"expect": ["x"]}, {"expect": ["flowbus.flow-run.Completed"]}]},
    {"match": {"data.deployment_name": "etl"}},
])
def test_running_a_deployment_on_its_own_flow_run_events_is_refused(trigger: dict[str, Any]) -> None:
    with pytest.raises(InvalidAutomation, match=r"would trigger this automation again.*flow-run events of 'etl'"):
        parse_automation(with_(trigger=trigger, actions=[{"type": "run-deployment", "deployment": "etl"}]))


@pytest.mark.parametrize("trigger", [
    {"expect": ["flowbus.flow-run.Completed"], "match": {"data.deployment_name": "extract"}},
    {"expect": ["flowbus.flow-run.Completed"], "match": {"data.deployment_name": "!etl"}},
    {"expect": ["com.github.push"]},
])
def test_running_another_deployment_is_allowed(trigger: dict[str, Any]) -> None:
    parse_automation(with_(trigger=trigger, actions=[{"type": "run-deployment", "deployment": "etl"}]))


def test_emitting_an_event_the_trigger_expects_is_refused() -> None:
    with pytest.raises(InvalidAutomation, match=r"emit-event 'shop.order.created'.*trigger expects"):
        parse_automation(with_(trigger={"expect": ["shop.order.*"]},
                               actions=[{"type": "do-nothing"}, {"type": "emit-event", "event": "shop.order.created"}]))
    with pytest.raises(InvalidAutomation, match="action 1 "):
        parse_automation(with_(trigger={"expect": ["a"], "after": ["shop.started"]},
                               actions_on_trigger=[{"type": "emit-event", "event": "shop.started"}],
                               actions=[{"type": "do-nothing"}]))


def test_pausing_a_deployment_on_deployment_events_is_refused() -> None:
    with pytest.raises(InvalidAutomation, match=r"pause-deployment\) would trigger .* flowbus.deployment.paused"):
        parse_automation(with_(trigger={"expect": ["flowbus.deployment.*"]},
                               actions=[{"type": "pause-deployment", "deployment": "etl"}]))
    parse_automation(with_(trigger={"expect": ["flowbus.deployment.updated"]},
                           actions=[{"type": "pause-deployment", "deployment": "etl"}]))


# --- channels --------------------------------------------------------------------------------


@pytest.mark.parametrize(("definition", "message"), [
    ({"name": "x", "config": {"kind": "pigeon"}}, "config.kind 'pigeon' is unknown"),
    ({"name": "x", "config": {"kind": "slack", "url": "ftp://x"}}, "config.url"),
    ({"name": "x", "config": {"kind": "email", "host": "h", "sender": "a@b", "to": ["not-mail"]}}, "config.to"),
    ({"name": "x", "config": {"kind": "email", "host": "h;rm -rf", "sender": "a@b", "to": ["a@b"]}}, "config.host"),
    ({"name": "has space", "config": {"kind": "slack", "url": "https://x"}}, "name"),
    ({"name": "x", "config": {"kind": "teams", "url": "https://x", "card": "hero"}}, "config.card"),
    ({"name": "x", "config": {"kind": "webhook", "url": "https://x/" + "a" * 300_000}}, "over 262144"),
])
def test_malformed_channels_are_refused(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAutomation, match=message.replace("(", r"\(")):
        parse_channel(definition)


async def test_store_round_trip_and_unknown_ids(bus: Bus) -> None:
    made = await store.create_automation(bus, BASE)
    assert (await store.find_automation(bus, "a")).id == made.id
    paused = await store.set_enabled(bus, made.id, False)
    assert paused.enabled is False
    updated = await store.update_automation(bus, made.id, with_(description="new"))
    assert (updated.description, updated.created) == ("new", made.created)
    for bad in ("ghost", "../x", "a.b", "*", ""):
        with pytest.raises(NotFound):
            await store.get_automation(bus, bad)
    with pytest.raises(NotFound):
        await store.request_redrive(bus, "no-such-key")
    await store.delete_automation(bus, made.id)
    assert await store.list_automations(bus) == []
