"""Cache policies as Prefect 3.8.8's objects (each expectation observed on Prefect
first): flattening and merging of compound policies, subtraction, ``configure`` and
the conflicts of ``+``, stabilising transforms, and ``key_storage`` honoured by runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.cache_policies import (
    DEFAULT,
    INPUTS,
    STABLE_TRANSFORMS,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    FlowParameters,
    Inputs,
    RunId,
    TaskSource,
    _None,
)


def test_every_policy_class_builds_without_arguments_and_none_adds_nothing() -> None:
    # flowbus's own policies: other tests in the process may define subclasses of their own
    ours = [cls for cls in CachePolicy.__subclasses__() if cls.__module__ == CachePolicy.__module__]
    names = {cls.__name__ for cls in ours}
    assert names == {"CacheKeyFnPolicy", "CompoundCachePolicy", "_None", "TaskSource", "FlowParameters",
                     "RunId", "Inputs"}  # fmt: skip
    for cls in ours:
        assert _None() + cls() == cls()
    with pytest.raises(NotImplementedError):
        CachePolicy().compute_key(None, None, None)


def test_compound_policies_flatten_and_merge_their_inputs() -> None:
    nested = CompoundCachePolicy(policies=[CompoundCachePolicy(policies=[Inputs(), TaskSource()]),
                                           CompoundCachePolicy(policies=[RunId()])])  # fmt: skip
    assert len(nested.policies) == 3 and RunId() in nested.policies
    merged = CompoundCachePolicy(policies=[Inputs(), TaskSource(), Inputs(exclude=["x"]), Inputs(exclude=["y"])])
    assert merged.policies == [TaskSource(), Inputs(exclude=["x", "y"])]
    less = merged - "z"
    assert [p.exclude for p in less.policies if isinstance(p, Inputs)] == [["x", "y", "z"]]
    no_inputs = RunId() + TaskSource()
    assert no_inputs - "foo" is no_inputs
    assert (Inputs() - "y").exclude == ["y"] and Inputs().exclude == []


def test_keys_outside_a_run() -> None:
    assert RunId().compute_key(None, {"x": 1}, None) is None
    assert TaskSource().compute_key(None, {"x": 1}, None) is None
    assert FlowParameters().compute_key(None, {"x": 1}, {}) is None
    assert FlowParameters().compute_key(None, None, {"a": 1}) != FlowParameters().compute_key(None, None, {"a": 2})
    key = (DEFAULT - "y").compute_key(None, {"x": 42, "y": "foo"}, None)
    assert key == (RunId() + Inputs(exclude=["y"])).compute_key(None, {"x": 42, "y": "bar"}, None)
    # a context without a task (anything else) leaves the key to the inputs alone
    assert Inputs().compute_key(1, {"x": 42}, None) == Inputs().compute_key(None, {"x": 42}, None)


def test_task_source_and_run_id_read_duck_typed_contexts() -> None:
    @dataclass
    class Run:
        id: str
        flow_run_id: str | None = None

    @dataclass
    class Ctx:
        task_run: Run
        task: Any = None

    source = "def a():\n    return 'a'"
    with_source = type("T", (), {"source_code": source})()
    other_source = type("T", (), {"source_code": source + "\n"})()
    assert TaskSource().compute_key(Ctx(Run("r"), with_source), None, None) != TaskSource().compute_key(
        Ctx(Run("r"), other_source), None, None)  # fmt: skip
    keys = {DEFAULT.compute_key(Ctx(Run(i, f), lambda: 1), None, None)
            for i, f in [("a", "a"), ("b", "b"), ("c", None), ("d", None)]}  # fmt: skip
    assert len(keys) == 4
    assert RunId().compute_key(Ctx(Run("t", None)), None, None) == "t"


def test_stable_transforms_apply_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STABLE_TRANSFORMS, dict, lambda value: "same")
    assert Inputs().compute_key(None, {"y": {"a": 1}}, None) == Inputs().compute_key(None, {"y": {"b": 2}}, None)
    assert Inputs().compute_key(None, {"x": 1}, None) != Inputs().compute_key(None, {"x": 2}, None)


def test_configure_copies_and_addition_refuses_conflicts() -> None:
    plain = Inputs()
    assert plain.configure() == plain and plain.configure() is not plain
    configured = plain.configure(key_storage="/somewhere", lock_manager="locks", isolation_level="SERIALIZABLE")
    assert (configured.key_storage, configured.lock_manager, configured.isolation_level) == (
        "/somewhere", "locks", "SERIALIZABLE")  # fmt: skip
    assert plain.key_storage is None
    combined = Inputs() + TaskSource().configure(key_storage="k", lock_manager="l", isolation_level="SERIALIZABLE")
    assert (combined.key_storage, combined.lock_manager, combined.isolation_level) == ("k", "l", "SERIALIZABLE")
    for kwargs, what in [({"lock_manager": "other"}, "lock implementations"),
                         ({"key_storage": "other"}, "storage locations"),
                         ({"isolation_level": "READ_COMMITTED"}, "isolation levels")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"Cannot add CachePolicies with different {what}"):
            combined + TaskSource().configure(**kwargs)
    with pytest.raises(ValueError, match="READ_COMMITTED, SERIALIZABLE"):
        Inputs().configure(isolation_level="SNAPSHOT")
    assert CacheKeyFnPolicy().compute_key(None, {"x": 1}, None) is None


def test_key_storage_holds_the_cache_records_of_its_runs(tmp_path: Path) -> None:
    calls: list[int] = []
    here = INPUTS.configure(key_storage=tmp_path / "keys")

    @task(cache_policy=here)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @task(cache_policy=INPUTS.configure(key_storage=tmp_path / "elsewhere"))
    def double_elsewhere(x: int) -> int:
        calls.append(x)
        return 2 * x

    @flow
    def twice() -> list[str]:
        return [double(3, return_state=True).name, double(3, return_state=True).name,
                double_elsewhere(3, return_state=True).name]  # fmt: skip

    assert twice() == ["Completed", "Cached", "Completed"]
    assert calls == [3, 3]
    assert len(list((tmp_path / "keys").iterdir())) == 1
    assert len(list((tmp_path / "elsewhere").iterdir())) == 1


async def test_key_storage_of_an_async_task(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS.configure(key_storage=str(tmp_path / "keys")))
    async def add_one(x: int) -> int:
        calls.append(x)
        return x + 1

    first = await add_one(1, return_state=True)
    second = await add_one(1, return_state=True)
    assert (first.name, second.name, calls) == ("Completed", "Cached", [1])
    assert len(list((tmp_path / "keys").iterdir())) == 1
