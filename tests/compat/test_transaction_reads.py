"""What a transaction commits with ``store=ResultStore(...)`` (no ``result_storage``) is
read back through ``ResultStore().read`` as in Prefect 3.8.8 (checked there first),
also for SERIALIZABLE transactions nested across asyncio tasks."""

from __future__ import annotations

import asyncio

import pytest

from flowbus.locking.memory import MemoryLockManager
from flowbus.results import ResultStore
from flowbus.transactions import IsolationLevel, atransaction, transaction


def test_a_committed_value_is_read_back_through_a_result_store() -> None:
    with transaction(key="sync-txn", store=ResultStore(lock_manager=MemoryLockManager()),
                     isolation_level=IsolationLevel.SERIALIZABLE) as txn:  # fmt: skip
        txn.stage({"foo": "bar"})
    assert ResultStore().read("sync-txn").result == {"foo": "bar"}
    assert ResultStore().exists("sync-txn") and not ResultStore().exists("never-committed")
    with pytest.raises(ValueError, match="never-committed"):
        ResultStore().read("never-committed")


def test_a_rolled_back_value_is_not_there() -> None:
    with pytest.raises(RuntimeError), transaction(key="rolled-back", store=ResultStore()) as txn:
        txn.stage(1)
        raise RuntimeError("undo")
    assert not ResultStore().exists("rolled-back")


def test_a_store_with_its_own_storage_does_not_read_the_transactions(tmp_path: object) -> None:
    with transaction(key="elsewhere", store=ResultStore()) as txn:
        txn.stage(2)
    assert ResultStore().read("elsewhere").result == 2
    assert not ResultStore(result_storage=str(tmp_path)).exists("elsewhere")


async def test_serializable_transactions_nested_across_asyncio_tasks() -> None:
    async def child() -> None:
        async with atransaction(key="child", store=ResultStore(lock_manager=MemoryLockManager()),
                                isolation_level=IsolationLevel.SERIALIZABLE) as txn:  # fmt: skip
            txn.stage({"foo": "bar"})

    async with atransaction(key="parent", store=ResultStore(lock_manager=MemoryLockManager()),
                            isolation_level=IsolationLevel.SERIALIZABLE):  # fmt: skip
        await asyncio.create_task(child())

    assert ResultStore().read("child").result == {"foo": "bar"}
    assert (await ResultStore().aread("child")).result == {"foo": "bar"}
