"""Which events a trigger matches: names, labels, related resources, `when` (table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from events.cloudevent import CloudEvent
from events.records import Deployment
from orchestrator.index import EventView, TriggerIndex, compile_triggers

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _matches(trigger: dict[str, Any], event: CloudEvent) -> bool:
    index = TriggerIndex()
    deployment = Deployment(name="d", flow_name="f", triggers=[trigger])
    index.replace_deployment("d", compile_triggers(deployment))
    return bool(index.match(EventView(event, NOW)))


def ev(type: str = "com.acme.order.created", source: str = "/shop", subject: str | None = None,
       data: Any = None, **ext: Any) -> CloudEvent:
    return CloudEvent.create(type, source=source, subject=subject, data=data, extensions=ext)


CASES = [
    # (name, trigger, event, expected)
    ("exact name", {"expect": ["com.acme.order.created"]}, ev(), True),
    ("other name", {"expect": ["com.acme.order.paid"]}, ev(), False),
    ("trailing wildcard", {"expect": ["com.acme.*"]}, ev(), True),
    ("wildcard spans dots", {"expect": ["com.*.created"]}, ev(), True),
    ("inner-token wildcard", {"expect": ["com.acme.order.cre*"]}, ev(), True),
    ("wildcard needs its prefix", {"expect": ["org.*"]}, ev(), False),
    ("bare star matches all", {"expect": ["*"]}, ev("x"), True),
    ("empty expect matches all", {}, ev("y.z"), True),
    ("after name also meets the trigger", {"expect": ["a"], "after": ["com.acme.*"], "threshold": 1},
     ev(), True),
    ("match source", {"match": {"source": "/shop"}}, ev(), True),
    ("match source differs", {"match": {"source": "/other"}}, ev(), False),
    ("match list any", {"match": {"source": ["/a", "/shop"]}}, ev(), True),
    ("match glob", {"match": {"source": "/sh*"}}, ev(), True),
    ("match star any value", {"match": {"subject": "*"}}, ev(subject="s"), True),
    ("star needs the label", {"match": {"subject": "*"}}, ev(), False),
    ("negation excludes", {"match": {"source": "!/shop"}}, ev(), False),
    ("negation passes others", {"match": {"source": "!/other"}}, ev(), True),
    ("negated glob", {"match": {"source": "!/sh*"}}, ev(), False),
    ("negation passes a missing label", {"match": {"subject": "!x"}}, ev(), True),
    ("positive and negative", {"match": {"source": ["/s*", "!/shop"]}}, ev(), False),
    ("resource id is subject", {"match": {"prefect.resource.id": "order-1"}}, ev(subject="order-1"), True),
    ("resource id falls back to source", {"match": {"flowbus.resource.id": "/shop"}}, ev(), True),
    ("extension attribute", {"match": {"tenant": "t1"}}, ev(tenant="t1"), True),
    ("extension number as text", {"match": {"prio": "3"}}, ev(prio=3), True),
    ("extension bool as text", {"match": {"urgent": "true"}}, ev(urgent=True), True),
    ("data field", {"match": {"data.order.status": "paid"}}, ev(data={"order": {"status": "paid"}}), True),
    ("data field differs", {"match": {"data.order.status": "paid"}}, ev(data={"order": {"status": "new"}}), False),
    ("data field in list", {"match": {"data.items.0": "x"}}, ev(data={"items": ["x"]}), True),
    ("data field of non-object data", {"match": {"data.a": "1"}}, ev(data="text"), False),
    ("data.resource labels", {"match": {"acme.region": "eu"}}, ev(data={"resource": {"acme.region": "eu"}}), True),
    ("related matches", {"match_related": {"prefect.resource.role": "flow", "prefect.resource.id": "f.*"}},
     ev(data={"related": [{"prefect.resource.role": "flow", "prefect.resource.id": "f.1"}]}), True),
    ("related must be one resource", {"match_related": {"role": "flow", "name": "b"}},
     ev(data={"related": [{"role": "flow", "name": "a"}, {"role": "tag", "name": "b"}]}), False),
    ("related list: each spec", {"match_related": [{"role": "flow"}, {"role": "tag"}]},
     ev(data={"related": [{"role": "flow"}, {"role": "tag"}]}), True),
    ("related list: one missing", {"match_related": [{"role": "flow"}, {"role": "tag"}]},
     ev(data={"related": [{"role": "flow"}]}), False),
    ("no related resources", {"match_related": {"role": "flow"}}, ev(), False),
    ("when true", {"when": "event.data.count > 3"}, ev(data={"count": 5}), True),
    ("when false", {"when": "event.data.count > 3"}, ev(data={"count": 1}), False),
    ("when on attributes", {"when": "event.source.startsWith('/sh') && event.type.endsWith('created')"},
     ev(), True),
    ("when error is no match", {"when": "event.data.count > 3"}, ev(data={}), False),
    ("when on extension", {"when": "event.tenant == 't1'"}, ev(tenant="t1"), True),
]


@pytest.mark.parametrize(("trigger", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_trigger_matches_event(trigger: dict[str, Any], event: CloudEvent, expected: bool) -> None:
    assert _matches(trigger, event) is expected


def _flow_run_event(state: str) -> CloudEvent:
    from events.records import FlowRun, State
    from events.runs import state_change_event

    run = FlowRun(id="r1", name="r", flow_name="f", state=State.named("Pending"))
    if state != "Running":
        run = run.transition(State.named("Running"))
    return state_change_event(run.transition(State.named(state)), source="/runner")


@pytest.mark.parametrize(("trigger", "state", "expected"), [
    ({"expect": ["prefect.flow-run.Failed"]}, "Failed", True),
    ({"expect": ["prefect.flow-run.Failed"]}, "Completed", False),
    ({"expect": ["prefect.flow-run.*"]}, "Running", True),
    ({"expect": ["*"], "match": {"prefect.resource.id": "prefect.flow-run.*"}}, "Failed", True),
    ({"expect": ["*"], "match": {"prefect.resource.id": "prefect.flow-run.r1"}}, "Failed", True),
    ({"expect": ["*"], "match": {"prefect.resource.id": ["!prefect.flow-run.r1"]}}, "Failed", False),
    ({"expect": ["prefect.deployment.*"]}, "Failed", False),
])  # fmt: skip
def test_prefect_flow_run_names_match_flowbus_flow_run_events(
    trigger: dict[str, Any], state: str, expected: bool
) -> None:
    # A trigger written for Prefect's prefect.flow-run.* events fires on flowbus's.
    assert _matches(trigger, _flow_run_event(state)) is expected


def test_prefect_names_are_stored_as_flowbus_names() -> None:
    from events.triggers import parse_deployment_trigger

    trigger = parse_deployment_trigger({
        "expect": ["prefect.flow-run.Failed", "prefect.task-run.*", "com.acme.prefect.flow-run.x"],
        "match": {"prefect.resource.id": ["prefect.flow-run.*", "!prefect.deployment.d"], "source": "prefect.flow-run.1"},
    })  # fmt: skip
    assert trigger.expect == {"flowbus.flow-run.Failed", "flowbus.task-run.*", "com.acme.prefect.flow-run.x"}
    assert trigger.match == {"prefect.resource.id": ["flowbus.flow-run.*", "!flowbus.deployment.d"],
                             "source": "prefect.flow-run.1"}  # fmt: skip
