from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import flowbus
from flowbus import flow, task
from flowbus.cache_policies import FLOW_PARAMETERS, INPUTS, NONE, TASK_SOURCE
from flowbus.exceptions import SerializationError
from flowbus.results import LocalResultStore, decode_cache_record
from flowbus.serializers import JSONSerializer
from flowbus.states import ResultRef
from flowbus.tasks import task_input_hash


def test_cache_hit_skips_the_body_and_ends_cached(sink) -> None:  # type: ignore[no-untyped-def]
    calls = []

    @task(cache_policy=INPUTS)
    def expensive(x: int) -> int:
        calls.append(x)
        return x * 2

    first = expensive(2, return_state=True)
    second = expensive(2, return_state=True)
    other = expensive(3, return_state=True)
    assert calls == [2, 3]
    assert (first.name, second.name, other.name) == ("Completed", "Cached", "Completed")
    assert second.is_completed() and second.result() == 4
    assert ["Pending", "Cached"] in sink.runs("task-run").values()


def test_tasks_without_cache_options_never_cache() -> None:
    calls = []

    @task
    def plain(x: int) -> int:
        calls.append(x)
        return x

    plain(1)
    plain(1)
    assert calls == [1, 1]


def test_inputs_minus_an_argument_ignores_it() -> None:
    calls = []

    @task(cache_policy=INPUTS - "verbose")
    def fetch(url: str, verbose: bool = False) -> str:
        calls.append(url)
        return url.upper()

    fetch("a", verbose=True)
    assert fetch("a", verbose=False) == "A"
    assert calls == ["a"]


def test_cache_key_fn_and_task_input_hash() -> None:
    calls = []

    @task(cache_key_fn=lambda ctx, params: f"key-{params['x'] % 2}")
    def parity(x: int) -> int:
        calls.append(x)
        return x

    assert parity(1) == 1
    assert parity(3) == 1  # same key: cached result of the first call
    assert calls == [1]

    @task(cache_key_fn=task_input_hash)
    def hashed(x: int) -> int:
        calls.append(x)
        return x

    hashed(10)
    hashed(10)
    assert calls == [1, 10]


def test_cache_key_fn_receives_the_task_run_context() -> None:
    seen = []

    def key(ctx, params) -> str:  # type: ignore[no-untyped-def]
        seen.append(ctx.task.name)
        return "fixed"

    @task(cache_key_fn=key)
    def t() -> int:
        return 1

    t()
    assert seen == ["t"]


def test_cache_expiration() -> None:
    calls = []

    @task(cache_policy=INPUTS, cache_expiration=dt.timedelta(seconds=-1))
    def expired(x: int) -> int:
        calls.append(x)
        return x

    @task(cache_policy=INPUTS, cache_expiration=dt.timedelta(hours=1))
    def fresh(x: int) -> int:
        calls.append(-x)
        return x

    expired(1)
    expired(1)
    fresh(1)
    fresh(1)
    assert calls == [1, 1, -1]


def test_refresh_cache_ignores_and_overwrites() -> None:
    value = {"v": 1}

    @task(cache_policy=INPUTS)
    def read(key: str) -> int:
        return value[key]

    assert read("v") == 1
    value["v"] = 2
    assert read("v") == 1
    assert read.with_options(refresh_cache=True)("v") == 2
    assert read("v") == 2


def test_inputs_policy_does_not_cache_a_task_without_inputs() -> None:
    # As Prefect's INPUTS: no inputs, no cache key, so every call runs.
    calls: list[int] = []

    @task(cache_policy=INPUTS)
    def read() -> int:
        calls.append(1)
        return len(calls)

    assert (read(), read()) == (1, 2)


def test_none_policy_and_task_source_and_flow_parameters() -> None:
    calls: list[str] = []

    @task(cache_policy=NONE)
    def never() -> None:
        calls.append("never")

    @task(cache_policy=TASK_SOURCE)
    def by_source(x: int) -> int:
        calls.append(f"source{x}")
        return x

    @task(cache_policy=FLOW_PARAMETERS)
    def by_flow_params() -> None:
        calls.append("fp")

    @flow
    def f(day: str) -> None:
        by_flow_params()

    never()
    never()
    by_source(1)
    by_source(2)  # same source: hit regardless of inputs
    f("mon")
    f("mon")
    f("tue")
    assert calls == ["never", "never", "source1", "fp", "fp"]


def test_unserializable_result_fails_with_a_message_naming_the_type() -> None:
    class Custom:
        pass

    @task(cache_policy=INPUTS)
    def make() -> Custom:
        return Custom()

    state = make(return_state=True)
    assert state.is_failed()
    with pytest.raises(SerializationError, match="Custom"):
        state.result()


def test_cloudpickle_serializer_is_opt_in() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    calls = []

    @task(cache_policy=INPUTS, result_serializer="cloudpickle")
    def make(x: int) -> Point:
        calls.append(x)
        return Point(x)

    make(1)
    assert make(1).x == 1
    assert calls == [1]


def test_json_results_round_trip_common_types() -> None:
    value = {
        "when": dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 2),
        "tags": {"a"},
        "raw": b"\x00\x01",
        "n": [1, 2.5, None, "s"],
    }
    ser = JSONSerializer()
    assert ser.loads(ser.dumps(value)) == value


def test_persisted_result_kept_out_of_memory_is_loaded_from_the_store(tmp_path: Path) -> None:
    @task(persist_result=True, result_storage=str(tmp_path / "r"), result_storage_key="out-{n}", cache_result_in_memory=False)
    def produce(n: int) -> list[int]:
        return list(range(n))

    state = produce(3, return_state=True)
    assert isinstance(state.data, ResultRef)
    assert state.result() == [0, 1, 2]
    assert (tmp_path / "r" / "out-3").read_bytes() == b"[0,1,2]"


def test_flow_result_persisted_when_asked(flowbus_home: Path) -> None:
    @flow(persist_result=True)
    def f() -> dict[str, int]:
        return {"a": 1}

    f()
    (stored,) = (flowbus_home / "results" / "flow-runs").iterdir()
    assert stored.read_bytes() == b'{"a":1}'


def test_local_store_writes_atomically_under_concurrent_readers(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path)
    big_a, big_b = b"a" * 2_000_000, b"b" * 2_000_000
    store.write("k", big_a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = store.read("k")
            assert data is not None
            seen.add(data[:1] + data[-1:] + str(len(data)).encode())

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(30):
        store.write("k", big_a if i % 2 else big_b)
    stop.set()
    for t in threads:
        t.join()
    assert seen <= {b"aa2000000", b"bb2000000"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_store_rejects_keys_that_escape_its_directory(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path / "store")
    for key in ("../evil", "a/../../b", "", "/abs"):
        with pytest.raises(ValueError, match="not usable"):
            store.write(key, b"x")
    assert not (tmp_path / "evil").exists()


def test_store_accepts_any_other_key(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path)
    store.write("report: 2024/01 final?", b"1")
    assert store.read("report: 2024/01 final?") == b"1"
    assert store.read("report: 2024/01 other") is None
    store.delete("report: 2024/01 final?")
    assert store.read("report: 2024/01 final?") is None


def test_cache_key_fn_may_return_any_string() -> None:
    calls = []

    @task(cache_key_fn=lambda ctx, params: f"user key: {params['x']}")
    def t(x: int) -> int:
        calls.append(x)
        return x

    assert t(1) == 1 and t(1) == 1
    assert calls == [1]


def test_cache_record_round_trip_and_expiry() -> None:
    from flowbus.results import encode_cache_record

    ser = JSONSerializer()
    live = encode_cache_record(ser, b"1", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    dead = encode_cache_record(ser, b"1", dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert decode_cache_record(live) is not None
    assert decode_cache_record(dead) is None
    assert decode_cache_record(b"garbage") is None


_CROSS_PROCESS = textwrap.dedent(
    """
    import sys
    from flowbus import flow, task
    from flowbus.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def compute(x: int) -> int:
        print("BODY RAN", flush=True)
        return x * 100

    @flow
    def main() -> str:
        state = compute(7, return_state=True)
        return f"{state.name}:{state.result()}"

    print("RESULT", main(), flush=True)
    """
)


def test_cache_hit_across_two_processes(tmp_path: Path, flowbus_home: Path) -> None:
    script = tmp_path / "cached_flow.py"
    script.write_text(_CROSS_PROCESS)
    env = {**os.environ, "FLOWBUS_HOME": str(flowbus_home), "PYTHONPATH": str(Path(flowbus.__file__).parent.parent)}
    outputs = [
        subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30).stdout
        for _ in range(2)
    ]
    assert "BODY RAN" in outputs[0] and "RESULT Completed:700" in outputs[0]
    assert "BODY RAN" not in outputs[1] and "RESULT Cached:700" in outputs[1]


class DictStore:
    """A ResultStore kept in a dict: stands in for a server-backed store in this test."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def read(self, key: str) -> bytes | None:
        return self.data.get(key)

    def write(self, key: str, data: bytes) -> None:
        self.data[key] = data

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def test_installed_default_stores_receive_results_and_cache_records(flowbus_home: Path) -> None:
    from flowbus.results import set_default_stores

    results, cache = DictStore(), DictStore()
    set_default_stores(results=results, cache=cache)
    try:

        @task(cache_policy=INPUTS)
        def t(x: int) -> int:
            return x + 1

        assert t(1) == 2
        assert t(1, return_state=True).name == "Cached"
        assert len(results.data) == 1 and len(cache.data) == 1
        assert not flowbus_home.exists()
    finally:
        set_default_stores()


def test_flowbus_home_defaults_to_dot_flowbus_in_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowbus.results import flowbus_home

    monkeypatch.delenv("FLOWBUS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert flowbus_home() == tmp_path / ".flowbus"
