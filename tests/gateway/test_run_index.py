"""The run index answers every list query exactly as filtering all runs would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.records import FlowRun, State
from gateway.bitmaps import between, slots_of
from gateway.runindex import IndexedFields, RunFilter, RunIndex
from gateway.textindex import scan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATES = ["Scheduled", "Running", "Completed", "Failed"]


def record(i: int, state: str, dep: int, flow: int, tags: list[str], minute: int) -> FlowRun:
    return FlowRun(id=f"run-{i}", name=f"name-{i}", flow_name=f"flow-{flow}",
                   deployment_name=f"dep-{dep}", deployment_id=f"id-{dep}", tags=tags,
                   state=State.named(state), created=T0 + timedelta(minutes=minute),
                   triggering_event=None if dep == 2 else {"id": f"e{flow}", "source": "/t",
                                                           "type": "t.x"})


def brute(runs: dict[str, FlowRun], where: RunFilter) -> list[str]:
    def ok(r: FlowRun) -> bool:
        text = " ".join(filter(None, (r.id, r.name, r.flow_name, r.deployment_name,
                                      *r.tags))).lower()
        return all((
            where.state is None or r.state.name == where.state,
            where.deployment is None or where.deployment in (r.deployment_name, r.deployment_id),
            where.flow is None or r.flow_name == where.flow,
            where.tag is None or where.tag in r.tags,
            where.since is None or r.created >= where.since,
            where.until is None or r.created < where.until,
            where.text is None or where.text.lower() in text,
            where.event is None or (r.triggering_event or {}).get("id") == where.event,
        ))

    chosen = sorted((r for r in runs.values() if ok(r)), key=lambda r: (r.created, r.id),
                    reverse=True)
    return [r.id for r in chosen]


run_args = st.tuples(st.sampled_from(STATES), st.integers(0, 2), st.integers(0, 1),
                     st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
                     st.integers(0, 20))
filters = st.builds(
    RunFilter,
    state=st.none() | st.sampled_from(STATES), deployment=st.none() | st.sampled_from(["dep-1", "id-2"]),
    flow=st.none() | st.just("flow-1"), tag=st.none() | st.sampled_from(["a", "c"]),
    since=st.none() | st.integers(0, 20).map(lambda m: T0 + timedelta(minutes=m)),
    until=st.none() | st.integers(0, 20).map(lambda m: T0 + timedelta(minutes=m)),
    text=st.none() | st.sampled_from(["NAME-1", "dep-0", "run-2", "zzz", "-1", "e-1 dep",
                                       "flow-1 dep-1", "1 d", "run-", "flow-"]),
    event=st.none() | st.sampled_from(["e0", "e1"]),
)


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 15), st.none() | run_args), max_size=40),
       load_first=st.integers(0, 40), where=filters, offset=st.integers(0, 12),
       limit=st.integers(1, 7), common_gram_floor=st.sampled_from([0, 3, 1000]),
       bitmap_floor=st.sampled_from([0, 2, 256]), scan_share=st.sampled_from([0.0, 0.25, 2.0]))
def test_queries_match_filtering_all_runs(
    ops: list[tuple[int, tuple[str, int, int, list[str], int] | None]], load_first: int,
    where: RunFilter, offset: int, limit: int, common_gram_floor: int, bitmap_floor: int,
    scan_share: float,
) -> None:
    # A low floor makes most grams common, so both ways of searching text are checked;
    # a low bitmap floor gives filter values bitmaps that live changes keep current; a
    # scan share of 0 always scans texts and creation times, 2.0 never does.
    index = RunIndex(common_gram_floor=common_gram_floor, bitmap_floor=bitmap_floor,
                     scan_share=scan_share)
    runs: dict[str, FlowRun] = {}
    for revision, (i, args) in enumerate(ops, start=1):
        if revision == load_first:
            index.finish_load()  # the first part arrives as the initial values, the rest live
        if args is None:
            runs.pop(f"run-{i}", None)
            index.apply(f"run-{i}", None, revision)
        else:
            runs[f"run-{i}"] = record(i, *args)
            index.apply(f"run-{i}", runs[f"run-{i}"].model_dump_json().encode(), revision)
    index.finish_load()
    expected = brute(runs, where)
    page, total = index.query(where, offset, limit)
    assert total == len(expected)
    assert page == expected[offset : offset + limit]
    assert index.count(where) == len(expected)


def test_a_late_older_value_does_not_overwrite_a_newer_one() -> None:
    index = RunIndex()
    index.finish_load()
    running = record(1, "Running", 0, 0, [], 0).model_dump_json().encode()
    done = record(1, "Completed", 0, 0, [], 0).model_dump_json().encode()
    index.apply("run-1", done, 5)
    index.apply("run-1", running, 3)
    assert index.query(RunFilter(state="Completed"), 0, 10) == (["run-1"], 1)


def test_a_record_that_is_not_a_run_is_left_out() -> None:
    index = RunIndex()
    index.finish_load()
    index.apply("junk", b'{"not": "a run"}', 1)
    assert index.query(RunFilter(), 0, 10) == ([], 0)


def test_the_index_reads_fields_the_run_record_has() -> None:
    assert set(IndexedFields.model_fields) <= set(FlowRun.model_fields)


def test_finish_load_drops_runs_missing_from_a_reread() -> None:
    index = RunIndex()
    for i in (1, 2):
        index.apply(f"run-{i}", record(i, "Running", 0, 0, [], i).model_dump_json().encode(), i)
    index.finish_load({"run-2"})
    assert index.query(RunFilter(), 0, 10) == (["run-2"], 1)


def test_histogram_counts_runs_per_step() -> None:
    index = RunIndex()
    for i, minute in enumerate((0, 0, 1, 3)):
        index.apply(f"run-{i}", record(i, "Running", 0, 0, [], minute).model_dump_json().encode(),
                    i + 1)
    index.finish_load()
    start = T0.timestamp()
    assert [n for _, n in index.histogram(start, start + 240, 60)] == [2, 1, 0, 1]


def test_a_text_search_compares_only_the_runs_its_grams_point_to() -> None:
    index = RunIndex(common_gram_floor=10)
    for i in range(200):
        index.apply(f"run-{i}", record(i, "Running", i % 3, 0, [], i).model_dump_json().encode(),
                    i + 1)
    index.finish_load()
    text = index._text  # the gram index the query asks first
    found = text.candidates("name-123")
    assert found is not None and {k[1] for k in found} == {"run-123"}
    assert text.candidates("zzz") == set()  # a gram no run has: nothing to compare
    assert text.candidates("dep") is None  # in every run: common, not indexed
    assert text.candidates("na") is None  # shorter than a gram
    assert index.query(RunFilter(text="NAME-123"), 0, 10) == (["run-123"], 1)
    index.apply("run-123", None, 500)
    assert text.candidates("name-123") == set()
    assert index.query(RunFilter(text="name-123"), 0, 10) == ([], 0)


@pytest.mark.parametrize("scan_share", [0.25, 0.0, 2.0])
def test_bitmaps_walks_and_sparse_results_match_filtering_all_runs_at_every_depth(
    scan_share: float,
) -> None:
    # Enough runs that filter values keep bitmaps, rare combinations are read off the
    # bitmap and deep pages are walked from the older end; then changes and deletes.
    # Texts of common grams only (one in every run) and long time ranges are scanned
    # (by default, or always), or compared run by run (never scanned).
    index = RunIndex(bitmap_floor=16, common_gram_floor=40, scan_share=scan_share)
    runs: dict[str, FlowRun] = {}
    revision = 0

    def put(i: int, state: str) -> None:
        nonlocal revision
        revision += 1
        runs[f"run-{i}"] = record(i, state, i % 3, i % 2, ["a"] if i % 5 else ["a", "c"], i % 97)
        index.apply(f"run-{i}", runs[f"run-{i}"].model_dump_json().encode(), revision)

    for i in range(600):
        put(i, STATES[i % 4] if i % 50 else "Failed")
    index.finish_load()
    wheres = [RunFilter(state="Failed", tag="c"), RunFilter(flow="flow-1", tag="a"),
              RunFilter(state="Running", deployment="dep-1", flow="flow-1"),
              RunFilter(tag="c", text="name-1"), RunFilter(text="name-4", flow="flow-0"),
              RunFilter(state="Completed", since=T0 + timedelta(minutes=30)),
              RunFilter(event="e1", state="Scheduled"), RunFilter(text="dep-1", tag="c"),
              RunFilter(text="run-"), RunFilter(text="NAME-5"), RunFilter(text="name-5", tag="c"),
              RunFilter(text="run-", flow="flow-1", state="Failed"),
              RunFilter(text="run-", since=T0 + timedelta(minutes=10)),
              RunFilter(text="name-1", since=T0 + timedelta(minutes=5),
                        until=T0 + timedelta(minutes=90), tag="a"),
              RunFilter(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=96),
                        flow="flow-0", tag="a")]

    def check() -> None:
        for where in wheres:
            expected = brute(runs, where)
            for offset in (0, 3, len(expected) // 2, max(0, len(expected) - 2), len(expected) + 1):
                assert index.query(where, offset, 7) == (expected[offset : offset + 7],
                                                         len(expected)), (where, offset)

    check()
    for i in range(0, 600, 7):
        put(i, "Crashed" if i % 2 else "Failed")
    for i in range(3, 600, 11):
        runs.pop(f"run-{i}", None)
        revision += 1
        index.apply(f"run-{i}", None, revision)
    for i in range(600, 640):
        put(i, "Failed")  # new runs take the freed slots
    check()


def test_scans_give_the_bitmap_of_texts_holding_a_needle_and_of_times_in_a_range() -> None:
    texts = ["run-1 a", "", "x run-1 run-1", "run-2", "rün-1"]
    assert slots_of(scan(texts, "run-1")) == [0, 2]
    assert slots_of(scan(texts, "rün")) == [4]
    assert scan(texts, "zzz") == 0 and scan([], "run") == 0
    times = [5.0, float("nan"), 1.0, 9.0, 5.5]
    assert slots_of(between(times, 5.0, 9.0)) == [0, 4]
    assert slots_of(between(times, None, 5.5)) == [0, 2]
    assert slots_of(between(times, 5.5, None)) == [3, 4]
    assert slots_of(between(times, None, None)) == [0, 2, 3, 4]
    assert between(times, 9.5, None) == 0 and between([], 1.0, 2.0) == 0
