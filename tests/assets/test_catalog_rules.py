"""How the catalog folds asset events (`events.assets.apply_event`, pure logic).

The events come from the real producer: flows with ``@materialize`` tasks writing
through the SDK's JSON-lines sink. The orchestrator handles a batch of events at
once, so the result must not depend on the order they are folded in.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

from events.assets import AssetRecord, apply_event, parse_asset_event
from events.cloudevent import CloudEvent, from_dict
from flowbus import _sink, flow
from flowbus._sink import JsonLinesSink
from flowbus.assets import Asset, AssetProperties, materialize

KEY = "s3://lake/orders.csv"
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def produced_events(tmp_path: Path) -> list[CloudEvent]:
    """Three runs: succeeded (properties v1), failed (v2), referenced by a third task."""
    sink = JsonLinesSink(tmp_path / "events.jsonl")
    previous = _sink.set_event_sink(sink)
    try:
        for version, fail in (("v1", False), ("v2", True)):
            orders = Asset(key=KEY, properties=AssetProperties(description=version))

            @materialize(orders)
            def write(fail: bool = fail) -> None:
                if fail:
                    raise RuntimeError("no space left")

            @flow
            def pipeline() -> None:
                write()

            pipeline(return_state=True)  # type: ignore[call-arg]

        @materialize("s3://lake/report.csv", asset_deps=[KEY])
        def report() -> None:
            pass

        report()
    finally:
        _sink.set_event_sink(previous)
        sink.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    return [from_dict(e) for e in lines if e.get("subject") == KEY]


def fold(events: list[CloudEvent]) -> AssetRecord:
    record = None
    for event in events:
        record = apply_event(record, event, parse_asset_event(event), NOW) or record
    assert record is not None
    return record


def test_the_fold_keeps_the_newest_whatever_the_order(tmp_path: Path) -> None:
    events = produced_events(tmp_path)
    assert [e.type.rsplit(".", 1)[-1] for e in events] == ["succeeded", "failed", "referenced"]
    expected = fold(events)
    latest = expected.latest_materialization
    assert latest is not None and latest.status == "failed" and latest.event_id == events[1].id
    assert expected.last_succeeded == events[0].time
    assert expected.last_referenced == events[2].time
    assert expected.properties == AssetProperties(description="v2")
    for order in itertools.permutations(events):
        assert fold(list(order)) == expected


def test_an_event_already_folded_changes_nothing(tmp_path: Path) -> None:
    events = produced_events(tmp_path)
    record = fold(events)
    for event in events:
        assert apply_event(record, event, parse_asset_event(event), NOW) is None


def test_prefect_asset_event_names_become_flowbus_names_in_triggers() -> None:
    from events.assets import PREFECT_EVENT_NAMES
    from events.prefect_names import from_prefect_name
    from events.triggers import parse_deployment_trigger

    for prefect_name, flowbus_name in PREFECT_EVENT_NAMES.items():
        assert from_prefect_name(prefect_name) == flowbus_name
    assert from_prefect_name("com.github.push") == "com.github.push"
    trigger = parse_deployment_trigger({
        "expect": ["prefect.asset.materialization.succeeded", "com.example.ready"],
        "after": ["prefect.asset.*"]})
    assert trigger.expect == {"flowbus.asset.materialization.succeeded", "com.example.ready"}
    assert trigger.after == {"flowbus.asset.*"}
