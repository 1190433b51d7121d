"""Malformed, oversized and hostile trigger and schedule definitions are refused clearly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.deployments import save_deployment
from events.records import Deployment
from events.schedules import InvalidSchedule, parse_schedule
from events.triggers import InvalidTrigger, parse_deployment_trigger, trigger_id
from orchestrator.service import Orchestrator
from tests.orchestrator.support import (
    deploy,
    fast_settings,
    flow_runs,
    start,
    wait_for_runs,
    wait_until,
)

BAD_TRIGGERS: list[tuple[Any, str]] = [
    ({"expect": ["a..b"]}, "not an event name pattern"),
    ({"expect": ["a.>"]}, "not an event name pattern"),
    ({"type": "webhook"}, "unknown"),
    ({"expect": ["a"], "surprise": 1}, "surprise"),
    ({"threshold": 0}, "threshold"),
    ({"threshold": 10**9}, "threshold"),
    ({"within": -5}, "within"),
    ({"posture": "Proactive", "expect": ["a"]}, "Proactive trigger needs within"),
    ({"posture": "Proactive", "within": 30}, "needs expect"),
    ({"posture": "Sideways"}, "posture"),
    ({"match": {"bad label!": "x"}}, "label"),
    ({"match": {"source": []}}, "empty list"),
    ({"match": {"source": "x" * 5000}}, "characters"),
    ({"match": {f"l{i}": "x" for i in range(100)}}, "labels"),
    ({"expect": [f"e{i}" for i in range(100)]}, "patterns"),
    ({"when": "event.data.x >"}, "does not compile"),
    ({"when": "x" * 10_000}, "characters"),
    ({"parameters": {"a": "{{ event.data.x "}}, "template syntax error"),
    ({"parameters": {"a": "{% for %}"}}, "template syntax error"),
    ({"type": "compound", "triggers": []}, "at least 1"),
    ({"type": "compound", "triggers": [{"expect": ["a"]}], "require": 5}, "require=5"),
    ({"type": "sequence", "triggers": [{"posture": "Proactive", "expect": ["a"], "within": 10}]},
     "not supported"),
    ({"type": "compound", "triggers": [{"type": "compound", "triggers": [
        {"type": "compound", "triggers": [{"expect": ["a"]}]}]}]}, "nest deeper"),
    ("not a dict", "definition"),
    ({"schedule_after": -1}, "schedule_after"),
]


@pytest.mark.parametrize(("definition", "message"), BAD_TRIGGERS,
                         ids=[m for _, m in BAD_TRIGGERS])
def test_bad_trigger_is_refused_naming_the_fault(definition: Any, message: str) -> None:
    with pytest.raises(InvalidTrigger) as caught:
        parse_deployment_trigger(definition)
    assert message in str(caught.value)


def test_trigger_id_ignores_order_of_sets_and_name() -> None:
    one = {"expect": ["a", "b"], "name": "x"}
    two = {"expect": ["b", "a"], "name": "y", "enabled": True}
    assert trigger_id("d", one) == trigger_id("d", two)
    assert trigger_id("d", one) != trigger_id("d", {"expect": ["a", "b"], "threshold": 2})


BAD_SCHEDULES: list[tuple[Any, str]] = [
    ({}, "exactly one"),
    ({"cron": "61 * * * *"}, "not valid"),
    ({"cron": "* * * * *", "interval": 60}, "exactly one"),
    ({"interval": 0.1}, "minimum"),
    ({"rrule": "FREQ=SOMETIMES"}, "not valid"),
    ({"cron": "* * * * *", "timezone": "Nowhere/Land"}, "time zone"),
    ({"interval": 60, "anchor_date": "2026-01-01T00:00:00"}, "time zone offset"),
    ({"cron": "* * * * *", "catchup": "all"}, "catchup"),
    ({"cron": "x" * 300}, "cron"),
]


@pytest.mark.parametrize(("definition", "message"), BAD_SCHEDULES, ids=[m for _, m in BAD_SCHEDULES])
def test_bad_schedule_is_refused_naming_the_fault(definition: Any, message: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_schedule(definition)
    assert message in str(caught.value)


async def test_deployment_with_a_bad_trigger_is_refused_and_others_work(
    bus: Bus, orchestrator: Orchestrator
) -> None:
    kv = await bus.kv(bus.layout.deployments)
    await kv.put("broken", b'{"name": "broken", "flow_name": "f", "triggers": [{"expect": ["a..b"]}]}')
    await kv.put("garbage", b"\xff not json")
    await deploy(bus, "fine", triggers=[{"expect": ["a.b"]}])

    async def settled() -> bool:
        return orchestrator.catalog.get("fine") is not None and len(orchestrator.catalog.rejected) == 2

    await wait_until(settled)
    assert "not an event name pattern" in orchestrator.catalog.rejected["broken"]
    await bus.publish(CloudEvent.create("a.b", source="s"))
    [run] = await wait_for_runs(bus, 1)
    assert run.deployment_name == "fine"


async def test_events_that_are_not_cloudevents_are_dropped(bus: Bus, orchestrator: Orchestrator) -> None:
    await deploy(bus, triggers=[{"expect": ["a.b"]}])
    await wait_until(lambda: _indexed(orchestrator))
    subject = f"{bus.layout.events_prefix}.a.b"
    for body in (b"", b"{", b"[]", b'{"specversion": "1.0"}', b"\x00" * 1000):
        await bus.publish_raw(subject, body, {})
    await bus.publish(CloudEvent.create("a.b", source="s"))
    await wait_for_runs(bus, 1)
    await asyncio.sleep(0.2)
    assert len(await flow_runs(bus)) == 1


async def _indexed(orch: Orchestrator) -> bool:
    return len(orch.catalog.index) >= 1


def test_orchestrator_command_refuses_bad_settings(flowbus_env: dict[str, str]) -> None:
    for name, value, expected in (
        ("FLOWBUS_ORCHESTRATOR_MAX_IN_FLIGHT", "-3", "MAX_IN_FLIGHT"),
        ("FLOWBUS_ORCHESTRATOR_MAX_INFLIGHT", "3", "unknown setting"),
    ):
        env = {**flowbus_env, name: value, "PYTHONPATH": os.getcwd()}
        result = subprocess.run(
            [sys.executable, "-c", "from flowbus.cli import main; main()", "orchestrator"],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr


async def test_a_poison_event_is_dropped_at_once(bus: Bus) -> None:
    # Nested past the JSON depth limit (events/jsonlimits.py): not a CloudEvent flowbus
    # accepts, so it is dropped on its first delivery instead of failing max_deliveries times.
    # A trigger names its type, so the orchestrator decodes it; on a subject whose type
    # nothing acts on it is acked without being decoded.
    await save_deployment(bus, Deployment(name="poisoned", flow_name="f",
                                          triggers=[{"expect": ["a.b"]}]))
    running = await start(bus, fast_settings(max_deliveries=2))
    deep = b'{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    await bus.publish_raw(f"{bus.layout.events_prefix}.a.b", deep, {})
    await bus.publish_raw(f"{bus.layout.events_prefix}.a.idle", deep.replace(b"a.b", b"a.idle"), {})
    invalid = running.orch.metrics.events.labels("invalid")
    unmatched = running.orch.metrics.events.labels("unmatched")
    errors = running.orch.metrics.events.labels("error")

    async def given_up() -> bool:
        info = await bus.consumers(bus.layout.events_stream)
        return (invalid._value.get() >= 1 and unmatched._value.get() >= 1
                and all(c.num_ack_pending == 0 for c in info))

    await wait_until(given_up, within=15)
    await asyncio.sleep(1.5)  # a nak would redeliver after 1 s: nothing more comes
    assert (invalid._value.get(), errors._value.get()) == (1, 0)
    await running.close()


async def test_catalog_reload_forgets_deployments_deleted_meanwhile(bus: Bus) -> None:
    from orchestrator.deployments import DeploymentCatalog

    kv = await bus.kv(bus.layout.deployments)
    catalog = DeploymentCatalog(kv)
    await deploy(bus, "a", triggers=[{"expect": ["x.y"]}])
    await catalog.load()
    assert catalog.get("a") is not None and len(catalog.index) == 1
    await kv.delete("a")
    await catalog.load()
    assert catalog.get("a") is None and len(catalog.index) == 0
