"""Where a transaction keeps its record, and how transactions compare, as in Prefect 3.8.8
(each expectation was run on Prefect first).

Prefect's transaction with a key and no ``store`` writes to the default result
storage, which ``PREFECT_LOCAL_STORAGE_PATH`` moves; transactions are pydantic models
compared field by field (and unhashable); a store's own ``exists`` decides whether a
key is committed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.cache_policies import INPUTS
from flowbus.results import ResultStore, local_cache_dir
from flowbus.settings import (
    FLOWBUS_LOCAL_STORAGE_PATH,
    PREFECT_LOCAL_STORAGE_PATH,
    temporary_settings,
)
from flowbus.transactions import AsyncTransaction, Transaction, atransaction, transaction


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_the_storage_path_setting_moves_a_keyed_transactions_record(tmp_path: Path, flowbus_home: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: first}):
        with transaction(key="nightly") as txn:
            txn.stage({"rows": 3})
        record = txn.read()
        assert record is not None and record.result == {"rows": 3}
        with transaction(key="nightly") as again:
            assert again.is_committed()
    assert "nightly" in _files(first)
    assert not (flowbus_home / "cache").exists()
    with temporary_settings({FLOWBUS_LOCAL_STORAGE_PATH: second}):
        with transaction(key="nightly") as fresh:  # another storage path: a fresh key
            assert not fresh.is_committed()


def test_without_the_setting_records_stay_under_flowbus_home(flowbus_home: Path) -> None:
    assert local_cache_dir() == flowbus_home / "cache"
    with transaction(key="k") as txn:
        txn.stage(1)
    assert "k" in _files(flowbus_home / "cache")


async def test_async_transaction_follows_the_storage_path(tmp_path: Path) -> None:
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "a"}):
        async with atransaction(key="k") as txn:
            txn.stage("v")
        record = await AsyncTransaction(key="k").read()
        assert record is not None and record.result == "v"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "b"}):
        async with atransaction(key="k") as fresh:
            assert not fresh.is_committed()


def test_a_cached_task_and_a_transaction_share_the_moved_store(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @flow
    def pipeline() -> int:
        return double(4)

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "one"}):
        assert pipeline() == 8
        assert pipeline() == 8
    assert calls == [4]  # the second run hit the cache in the moved store
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "two"}):
        assert pipeline() == 8
    assert calls == [4, 4]  # a fresh storage path has no record


def test_transactions_compare_by_their_fields() -> None:
    assert Transaction() == Transaction()
    assert Transaction(key="a") == Transaction(key="a")
    assert Transaction(key="a") != Transaction(key="b")
    assert Transaction(commit_mode="EAGER") != Transaction(commit_mode="LAZY")
    assert Transaction() != object()
    assert AsyncTransaction() == AsyncTransaction()
    assert AsyncTransaction(key="a") != AsyncTransaction(key="b")
    with pytest.raises(TypeError, match="unhashable"):
        hash(Transaction())


def test_an_entered_transaction_differs_from_a_fresh_one() -> None:
    with transaction() as txn:
        assert txn != Transaction()  # ACTIVE, commit mode and isolation level set
    with transaction() as other:
        pass
    assert txn == other


class _AlwaysThere(ResultStore):
    def exists(self, key: str) -> bool:
        return True


class _AsyncAlwaysThere(ResultStore):
    async def aexists(self, key: str) -> bool:
        await asyncio.sleep(0)
        return True


def test_a_stores_own_exists_decides_committed() -> None:
    with Transaction(key="k", store=_AlwaysThere()) as txn:
        assert txn.is_committed()
    with Transaction(key="k", store=_AlwaysThere(), overwrite=True) as txn:
        assert not txn.is_committed()


async def test_a_stores_async_exists_decides_committed() -> None:
    async with AsyncTransaction(key="k", store=_AsyncAlwaysThere()) as txn:
        assert txn.is_committed()
    async with AsyncTransaction(key="k", store=_AsyncAlwaysThere(), overwrite=True) as txn:
        assert not txn.is_committed()


def test_a_store_without_exists_is_read(tmp_path: Path) -> None:
    store: Any = ResultStore(result_storage=tmp_path)
    with transaction(key="k", store=store) as txn:
        assert not txn.is_committed()
        txn.stage(1)
    with transaction(key="k", store=store) as txn:
        assert txn.is_committed()


def test_a_childs_own_commit_is_called_and_its_error_rolls_the_parent_back() -> None:
    class Refusing(Transaction):
        def commit(self, **kwargs: Any) -> bool:
            raise ValueError("refused")

    with Transaction() as txn:
        txn.add_child(Refusing())
    assert not txn.is_committed()
    assert txn.is_rolled_back()


async def test_an_async_childs_own_commit_is_awaited_and_its_error_rolls_the_parent_back() -> None:
    class Refusing(AsyncTransaction):
        async def commit(self, **kwargs: Any) -> bool:  # type: ignore[override]
            raise ValueError("refused")

    async with AsyncTransaction() as txn:
        txn.add_child(Refusing())
    assert not txn.is_committed()
    assert txn.is_rolled_back()


def test_a_childs_own_rollback_is_called() -> None:
    seen: list[str] = []

    class Noting(Transaction):
        def rollback(self) -> bool:
            seen.append("child rollback")
            return super().rollback()

    with pytest.raises(RuntimeError):
        with Transaction() as txn:
            txn.add_child(Noting())
            raise RuntimeError("boom")
    assert txn.is_rolled_back()
    assert seen == ["child rollback"]
