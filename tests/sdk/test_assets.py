"""flowbus.assets in-process: keys, @materialize, asset_deps, upstream inference, events.

Checked against Prefect 3.8.8 running the same programs: the same events in the
same cases (succeeded, failed, none when Cached), the same upstream assets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from events.assets import (
    MATERIALIZATION_FAILED,
    MATERIALIZATION_SUCCEEDED,
    MAX_ASSET_KEY_LENGTH,
    REFERENCED,
    InvalidAssetKey,
    check_asset_key,
)
from flowbus import flow, task
from flowbus.assets import (
    Asset,
    AssetProperties,
    MaterializingTask,
    add_asset_metadata,
    materialize,
)
from flowbus.cache_policies import INPUTS

from .conftest import CollectingSink


def asset_events(sink: CollectingSink) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e["type"], e["subject"], e["data"]) for e in sink.events
            if e["type"].startswith("flowbus.asset.")]


@pytest.mark.parametrize("key", ["s3://bucket/folder/data.csv", "postgres://db/table",
                                 "file:///tmp/x", "a1://x", "s3://b/" + "x" * 500])
def test_a_uri_with_a_lowercase_scheme_is_a_key(key: str) -> None:
    assert Asset(key=key).key == key == check_asset_key(key)


@pytest.mark.parametrize(("key", "why"), [
    ("bucket/data.csv", "not a URI with a lowercase scheme"),
    ("S3://bucket/x", "not a URI with a lowercase scheme"),
    ("", "not a URI"),
    ("s3://bucket/my file.csv", "' '"),
    ("s3://bucket/x?y=1", "'?'"),
    ("s3://bucket/x#frag", "'#'"),
    ("s3://bucket/<script>", "'<', '>'"),
    ("s3://bucket/a\nb", "'\\n'"),
    ("s3://bucket/a\x1bb", "'\\x1b'"),
    ("s3://bucket/a\x00b", "'\\x00'"),
    ("s3://bucket/" + "x" * MAX_ASSET_KEY_LENGTH, "over the limit of 512"),
])
def test_a_hostile_key_is_refused_naming_the_rule(key: str, why: str) -> None:
    with pytest.raises(InvalidAssetKey, match="asset key") as raised:
        check_asset_key(key)
    assert why in str(raised.value)
    with pytest.raises(ValidationError, match=r"asset key|at most 512 characters"):
        Asset(key=key)
    with pytest.raises(ValidationError):
        materialize(key)


def test_materialize_needs_an_asset_and_a_string_tool() -> None:
    with pytest.raises(TypeError, match="at least one asset"):
        materialize()
    with pytest.raises(TypeError, match="by= must be a string"):
        materialize("s3://a/b", by=3)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        task(asset_deps=["not a key"])(lambda: None)


def test_assets_are_frozen_and_hash_by_key() -> None:
    a = Asset(key="s3://a/b", properties=AssetProperties(name="B"))
    assert hash(a) == hash(Asset(key="s3://a/b")) and repr(a) == "Asset(key='s3://a/b')"
    with pytest.raises(ValidationError):
        a.key = "s3://other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        AssetProperties(description="x" * 2501)


def test_a_materialisation_reports_its_asset_upstream_assets_and_metadata(sink: CollectingSink) -> None:
    raw = Asset(key="s3://lake/raw.json")
    report = Asset(key="s3://lake/report.csv",
                   properties=AssetProperties(name="Report", owners=["ana"]))

    @materialize(raw)
    def extract() -> dict[str, list[int]]:
        return {"rows": [1, 2, 3]}

    @task
    def clean(data: dict[str, list[int]]) -> list[int]:  # a plain task passes assets on
        return [x * 2 for x in data["rows"]]

    @materialize(report, by="pandas", asset_deps=["postgres://db/customers"])
    def build(rows: list[int]) -> int:
        add_asset_metadata(report, {"rows": len(rows)})
        report.add_metadata({"max": max(rows)})
        return len(rows)

    @flow
    def pipeline() -> int:
        return build(clean(extract()))

    assert pipeline() == 3
    events = asset_events(sink)
    assert [(t, s) for t, s, _ in events] == [
        (MATERIALIZATION_SUCCEEDED, "s3://lake/raw.json"),
        (REFERENCED, "postgres://db/customers"),
        (REFERENCED, "s3://lake/raw.json"),
        (MATERIALIZATION_SUCCEEDED, "s3://lake/report.csv"),
    ]
    data = events[-1][2]
    task_runs = sink.runs("task-run")
    assert data["task_run_id"] in task_runs and data["flow_run_id"] in sink.runs("flow-run")
    assert data["asset"] == {"key": "s3://lake/report.csv",
                             "properties": {"name": "Report", "owners": ["ana"]}}
    assert data["status"] == "succeeded" and data["materialized_by"] == "pandas"
    assert data["metadata"] == {"rows": 3, "max": 6}
    assert [a["key"] for a in data["upstream"]] == ["postgres://db/customers", "s3://lake/raw.json"]
    roles = {r["flowbus.resource.role"]: r["flowbus.resource.id"] for r in data["related"]}
    assert roles["asset-materialized-by"] == "pandas"
    assert roles["task-run"] == f"flowbus.task-run.{data['task_run_id']}"
    assert events[0][2]["upstream"] == [] and events[0][2]["metadata"] == {}


def test_upstream_assets_come_through_futures_and_wait_for(sink: CollectingSink) -> None:
    @materialize("s3://a/one")
    def one() -> int:
        return 1  # an interned int: found through the future, not by identity

    @materialize("s3://a/two")
    def two() -> None:
        pass

    @materialize("s3://a/three")
    def three(x: int) -> int:
        return x

    @flow
    def pipeline() -> int:
        first = one.submit()
        second = two.submit()
        return three.submit(first, wait_for=[second]).result()

    assert pipeline() == 1
    (*_, last) = asset_events(sink)
    assert last[1] == "s3://a/three"
    assert [a["key"] for a in last[2]["upstream"]] == ["s3://a/one", "s3://a/two"]


def test_an_unrelated_value_is_not_taken_for_an_upstream_result(sink: CollectingSink) -> None:
    @materialize("s3://a/one")
    def one() -> list[int]:
        return [1]

    @materialize("s3://a/two")
    def two(x: list[int]) -> None:
        pass

    @flow
    def pipeline() -> None:
        one()
        two([1])  # equal, but not the object `one` returned

    pipeline()
    assert asset_events(sink)[-1][2]["upstream"] == []


def test_a_failed_materialisation_is_reported_failed(sink: CollectingSink) -> None:
    @materialize("s3://a/broken", asset_deps=["s3://a/src"])
    def broken() -> None:
        raise RuntimeError("disk full")

    @flow
    def pipeline() -> None:
        broken()

    state = pipeline(return_state=True)  # type: ignore[call-arg]
    assert state.is_failed()
    assert [(t, s) for t, s, _ in asset_events(sink)] == [
        (REFERENCED, "s3://a/src"), (MATERIALIZATION_FAILED, "s3://a/broken")]
    assert asset_events(sink)[-1][2]["status"] == "failed"


def test_a_cached_run_materialises_nothing(sink: CollectingSink) -> None:
    @materialize("s3://a/cached", cache_policy=INPUTS, cache_expiration=dt.timedelta(minutes=5))
    def cached(x: int) -> int:
        return x

    @flow
    def pipeline() -> None:
        cached(7)
        cached(7)

    pipeline()
    assert sink.state_names("task-run").count("Cached") == 1
    assert [t for t, _, _ in asset_events(sink)] == [MATERIALIZATION_SUCCEEDED]


def test_an_async_materialising_task_reports_too(sink: CollectingSink) -> None:
    @materialize("s3://a/async")
    async def produce() -> str:
        add_asset_metadata("s3://a/async", {"ok": True})
        return "done"

    @flow
    async def pipeline() -> str:
        return await produce()

    assert asyncio.run(pipeline()) == "done"
    assert asset_events(sink)[0][2]["metadata"] == {"ok": True}


def test_metadata_is_refused_where_prefect_refuses_it_and_when_it_is_not_small_json(
        sink: CollectingSink) -> None:
    with pytest.raises(RuntimeError, match="not inside of an AssetContext"):
        add_asset_metadata("s3://a/x", {"a": 1})
    with pytest.raises(RuntimeError, match="not inside of an AssetContext"):
        Asset(key="s3://a/x").add_metadata({"a": 1})
    seen: dict[str, str] = {}

    def attempt(name: str, fn: Any) -> None:
        try:
            fn()
        except (ValueError, TypeError) as exc:
            seen[name] = f"{type(exc).__name__}: {exc}"

    @task
    def plain() -> None:
        attempt("plain", lambda: add_asset_metadata("s3://a/x", {"a": 1}))

    @materialize("s3://a/x")
    def making() -> None:
        attempt("other", lambda: add_asset_metadata("s3://a/other", {"a": 1}))
        attempt("not json", lambda: add_asset_metadata("s3://a/x", {"a": object()}))
        attempt("too big", lambda: add_asset_metadata("s3://a/x", {"a": "x" * 70_000}))
        plain()  # a task called inside does not see the outer task's assets

    @flow
    def pipeline() -> None:
        making()

    pipeline()
    assert seen["plain"] == seen["other"] == (
        "ValueError: Can only add metadata to assets that are arguments to @materialize")
    assert seen["not json"].startswith("TypeError: asset metadata must be JSON")
    assert "over the limit of 65536" in seen["too big"]
    assert asset_events(sink)[-1][2]["metadata"] == {}


def test_with_options_keeps_or_replaces_the_assets(sink: CollectingSink) -> None:
    @materialize("s3://a/x", by="dbt")
    def make() -> None:
        pass

    retried = make.with_options(retries=2)
    moved = make.with_options(assets=["s3://a/y"])
    assert isinstance(retried, MaterializingTask) and retried.retries == 2
    assert [a.key for a in retried.assets] == ["s3://a/x"] and retried.materialized_by == "dbt"
    assert [a.key for a in moved.assets] == ["s3://a/y"]
    with pytest.raises(TypeError, match="Unknown task option"):
        make.with_options(colour="red")

    @flow
    def pipeline() -> None:
        moved()

    pipeline()
    assert [s for _, s, _ in asset_events(sink)] == ["s3://a/y"]


def test_outside_a_flow_a_materialising_task_still_reports(sink: CollectingSink) -> None:
    @materialize("s3://a/alone", asset_deps=[Asset(key="s3://a/in")])
    def alone() -> int:
        return 5

    assert alone() == 5
    events = asset_events(sink)
    assert [(t, s) for t, s, _ in events] == [(REFERENCED, "s3://a/in"),
                                              (MATERIALIZATION_SUCCEEDED, "s3://a/alone")]
    assert "flow_run_id" not in events[-1][2]


def test_in_a_process_pool_upstream_assets_travel_with_the_task_run(
        sink: CollectingSink, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from flowbus.task_runners import ProcessPoolTaskRunner

    events_file = tmp_path / "events.jsonl"
    # The workers' sink (this process keeps the collecting one the fixture installed).
    monkeypatch.setenv("FLOWBUS_EVENTS_FILE", str(events_file))

    @materialize("s3://p/one", asset_deps=["s3://p/source"])
    def one() -> int:
        return 1

    @task
    def between() -> None:
        pass

    @materialize("s3://p/two")
    def two() -> int:
        return 2

    # Futures go in wait_for: passing one as an argument to a process-pool task fails
    # to pickle, with or without assets.
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pipeline() -> int:
        first = one.submit()
        return two.submit(wait_for=[between.submit(wait_for=[first])]).result()

    assert pipeline() == 2
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    made = {e["subject"]: e["data"] for e in events
            if e.get("type") == MATERIALIZATION_SUCCEEDED}
    assert [a["key"] for a in made["s3://p/one"]["upstream"]] == ["s3://p/source"]
    assert [a["key"] for a in made["s3://p/two"]["upstream"]] == ["s3://p/one"]
