"""Transactions as Prefect 3.8.8 runs them (each expectation was run on Prefect first):
task hooks on commit and rollback, nested transactions, commit modes, keys, values."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.transactions import (
    CommitMode,
    IsolationLevel,
    Transaction,
    atransaction,
    get_transaction,
    transaction,
)


def _hook(log: list[str], name: str) -> Any:
    def hook(txn: Transaction) -> None:
        log.append(name)

    return hook


def test_a_failing_task_rolls_back_the_earlier_tasks(tmp_path: Path) -> None:
    target = tmp_path / "side-effect.txt"
    log: list[str] = []

    @task
    def write_file(contents: str) -> None:
        target.write_text(contents)

    @write_file.on_rollback
    def delete_file(txn: Transaction) -> None:
        log.append(f"rollback {txn.get('filename')}")
        target.unlink()

    @write_file.on_commit
    def confirm(txn: Transaction) -> None:
        log.append("commit")

    @task
    def quality_test() -> None:
        if len(target.read_text().splitlines()) < 2:
            raise ValueError("Not enough data!")

    @flow
    def pipeline(contents: str) -> None:
        with transaction() as txn:
            txn.set("filename", target.name)
            write_file(contents)
            quality_test()

    state = pipeline("hello", return_state=True)
    assert state.is_failed() and "Not enough data!" in str(state.message)
    assert log == ["rollback side-effect.txt"]
    assert not target.exists()

    log.clear()
    assert pipeline("a\nb\n") is None
    assert log == ["commit"]
    assert target.exists()


def test_rollback_hooks_run_last_staged_first_and_mark_the_run_rolled_back(sink: Any) -> None:
    log: list[str] = []

    @task(on_rollback=[_hook(log, "first")])
    def first() -> int:
        return 1

    @task(on_rollback=[_hook(log, "second")])
    def second() -> int:
        return 2

    @task
    def boom() -> None:
        raise RuntimeError("boom")

    @flow
    def pipeline() -> list[Any]:
        states: list[Any] = []
        with transaction():
            states.append(first(return_state=True))
            states.append(second(return_state=True))
            boom()
        return states

    with pytest.raises(RuntimeError, match="boom"):
        pipeline()
    assert log == ["second", "first"]
    first_runs = [e["data"] for e in sink.events
                  if e["type"].startswith("flowbus.task-run.") and e["data"]["task_name"] == "first"]  # fmt: skip
    assert first_runs[-1]["state"]["name"] == "RolledBack"


def test_a_task_with_hooks_outside_any_transaction_commits_at_once() -> None:
    log: list[str] = []

    @task(on_commit=[_hook(log, "commit")], on_rollback=[_hook(log, "rollback")])
    def alone() -> int:
        log.append("body")
        return 1

    assert alone() == 1
    assert log == ["body", "commit"]


def test_the_body_sees_the_runs_transaction_and_its_parents_values() -> None:
    seen: list[Any] = []

    @task
    def inside() -> None:
        txn = get_transaction()
        assert txn is not None
        seen.append(txn.get("who"))

    @flow
    def pipeline() -> None:
        with transaction() as outer:
            outer.set("who", "outer")
            inside()

    pipeline()
    assert seen == ["outer"]
    assert get_transaction() is None


async def test_async_tasks_stage_into_an_async_transaction() -> None:
    log: list[str] = []

    @task(on_commit=[_hook(log, "commit")], on_rollback=[_hook(log, "rollback")])
    async def step() -> int:
        await asyncio.sleep(0)
        return 1

    @flow
    async def pipeline(fail: bool) -> None:
        async with atransaction():
            await step()
            if fail:
                raise ValueError("late failure")

    await pipeline(False)
    assert log == ["commit"]
    with pytest.raises(ValueError, match="late failure"):
        await pipeline(True)
    assert log == ["commit", "rollback"]


def test_nested_rollback_rolls_the_parent_back_at_once() -> None:
    log: list[str] = []
    with transaction() as outer:
        outer.stage(1, on_rollback_hooks=[_hook(log, "outer")], on_commit_hooks=[_hook(log, "outer-c")])
        with pytest.raises(ValueError), transaction() as inner:
            inner.stage(2, on_rollback_hooks=[_hook(log, "inner")])
            raise ValueError("x")
        # As in Prefect: the parent is rolled back even though the block caught the error.
        assert outer.is_rolled_back() and inner.is_rolled_back()
    assert log == ["inner", "outer"]


def test_children_commit_with_the_parent_and_roll_back_in_reverse() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError), transaction() as outer:
        for name in ("a", "b"):
            with transaction() as child:
                child.stage(name, on_rollback_hooks=[_hook(log, f"{name}-rb")])
        assert [c.state.value for c in outer.children] == ["STAGED", "STAGED"]
        raise RuntimeError
    assert log == ["b-rb", "a-rb"]

    log.clear()
    with transaction() as outer:
        with transaction() as child:
            child.stage(1, on_commit_hooks=[_hook(log, "child")])
        assert log == []
    assert log == ["child"] and child.is_committed() and outer.is_committed()


def test_commit_modes() -> None:
    log: list[str] = []
    with transaction():
        with transaction(commit_mode=CommitMode.EAGER) as eager:
            eager.stage(1, on_commit_hooks=[_hook(log, "eager")])
        assert log == ["eager"]
    with transaction(commit_mode="off") as off:
        off.stage(1, on_rollback_hooks=[_hook(log, "off")], on_commit_hooks=[_hook(log, "never")])
    assert log == ["eager", "off"] and off.is_rolled_back()
    with pytest.raises(ValueError, match="commit_mode 'later' is not one of EAGER, LAZY, OFF"):
        transaction(commit_mode="later").__enter__()


def test_a_failing_commit_hook_rolls_the_transaction_back() -> None:
    log: list[str] = []

    def bad(txn: Transaction) -> None:
        raise RuntimeError("hook failed")

    with transaction() as txn:
        txn.stage(1, on_commit_hooks=[bad], on_rollback_hooks=[_hook(log, "rolled back")])
    assert txn.is_rolled_back() and log == ["rolled back"]
    assert txn.commit() is False and txn.rollback() is False


def test_values_are_copies_and_missing_ones_say_so() -> None:
    with transaction() as outer:
        outer.set("items", [1])
        with transaction() as inner:
            inner.get("items").append(2)
            assert inner.get("items") == [1]
            assert inner.get("absent", 7) == 7
            with pytest.raises(ValueError, match="unknown key: absent"):
                inner.get("absent")


def test_a_keyed_transaction_runs_once(tmp_path: Path) -> None:
    written: list[str] = []

    @task
    def write(data: str) -> None:
        written.append(data)

    @flow
    def pipeline(key: str) -> bool:
        with transaction(key=key) as txn:
            if txn.is_committed():
                return False
            write("some data")
        return True

    assert pipeline("download-and-write") is True
    assert pipeline("download-and-write") is False
    assert pipeline("another-key") is True
    assert written == ["some data", "some data"]
    with transaction(key="download-and-write", overwrite=True) as txn:
        assert not txn.is_committed()
    with transaction(key="staged", store=tmp_path / "records") as txn:
        txn.stage({"rows": 3})
    record = Transaction(key="staged", store=tmp_path / "records").read()
    assert record is not None and record.result == {"rows": 3}


def test_serializable_transactions_take_turns_in_threads() -> None:
    from flowbus.locking.memory import MemoryLockManager
    from flowbus.results import ResultStore

    inside: list[int] = []
    overlaps: list[int] = []
    store = ResultStore(lock_manager=MemoryLockManager())

    def worker(n: int) -> None:
        with transaction(key="turns", isolation_level=IsolationLevel.SERIALIZABLE, store=store,
                         overwrite=True, write_on_commit=False):  # fmt: skip
            inside.append(n)
            if len(inside) > 1:
                overlaps.append(n)
            threading.Event().wait(0.05)
            inside.remove(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert overlaps == [] and not MemoryLockManager().is_locked("turns")


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="transaction key must be a non-empty string"):
        Transaction(key="")
    with pytest.raises(ValueError, match="isolation_level 'SNAPSHOT' is not one of"):
        Transaction(isolation_level="SNAPSHOT")
    from flowbus.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="no read/write methods"), transaction(key="k", store=object()):
        pass


def test_submitted_and_mapped_runs_join_the_transaction() -> None:
    log: list[str] = []

    @task(on_commit=[_hook(log, "commit")], on_rollback=[_hook(log, "rollback")])
    def step(x: int) -> int:
        return x

    @flow
    def pipeline(fail: bool) -> None:
        with transaction():
            step.submit(1).result()
            [f.result() for f in step.map([2, 3])]
            if fail:
                raise ValueError("late")

    with pytest.raises(ValueError, match="late"):
        pipeline(True)
    assert log == ["rollback"] * 3
    log.clear()
    pipeline(False)
    assert log == ["commit"] * 3
