"""The lock managers of flowbus.locking used directly (Prefect's LockManager protocol)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

import pytest

from flowbus.locking import (
    FileSystemLockManager,
    JetStreamLockManager,
    LockManager,
    MemoryLockManager,
)


def test_every_manager_follows_the_protocol(tmp_path: Path) -> None:
    for manager in (MemoryLockManager(), FileSystemLockManager(tmp_path), JetStreamLockManager()):
        assert isinstance(manager, LockManager)
    assert MemoryLockManager() is MemoryLockManager()  # one table per process, as in Prefect


def test_memory_locks_hold_release_and_lapse() -> None:
    locks = MemoryLockManager()
    assert locks.acquire_lock("mem-a", holder="one")
    assert locks.acquire_lock("mem-a", holder="one")  # the holder may take it again
    assert locks.acquire_lock("mem-a", holder="two", acquire_timeout=0) is False
    assert locks.is_locked("mem-a") and locks.is_lock_holder("mem-a", "one")
    with pytest.raises(ValueError, match="No lock held by two for transaction with key"):
        locks.release_lock("mem-a", holder="two")
    locks.release_lock("mem-a", holder="one")
    assert not locks.is_locked("mem-a")

    assert locks.acquire_lock("mem-b", holder="one", hold_timeout=0.1)
    assert locks.wait_for_lock("mem-b", timeout=10)  # it lapses on its own
    assert locks.acquire_lock("mem-b", holder="two", acquire_timeout=0)
    locks.release_lock("mem-b", holder="two")


async def test_memory_locks_wait_without_blocking_the_loop() -> None:
    locks = MemoryLockManager()
    assert await locks.aacquire_lock("mem-c", holder="one")

    async def release_soon() -> None:
        await asyncio.sleep(0.1)
        locks.release_lock("mem-c", holder="one")

    releaser = asyncio.create_task(release_soon())
    assert await locks.aacquire_lock("mem-c", holder="two", acquire_timeout=10)
    await releaser
    assert await locks.await_for_lock("mem-c", timeout=0) is False
    locks.release_lock("mem-c", holder="two")
    assert await locks.await_for_lock("mem-c", timeout=0)


def test_file_locks_exclude_each_other(tmp_path: Path) -> None:
    first, second = FileSystemLockManager(tmp_path / "locks"), FileSystemLockManager(tmp_path / "locks")
    assert first.acquire_lock("report", holder="a")
    assert second.is_locked("report") and not second.is_lock_holder("report", "a")
    assert second.acquire_lock("report", holder="b", acquire_timeout=0.1) is False
    first.release_lock("report", holder="a")
    assert second.acquire_lock("report", holder="b", acquire_timeout=5)
    assert first.is_locked("report")
    second.release_lock("report", holder="b")
    assert not first.is_locked("report")


def test_a_file_lock_past_its_hold_timeout_can_be_broken_by_its_manager(tmp_path: Path) -> None:
    locks = FileSystemLockManager(tmp_path)
    assert locks.acquire_lock("k", holder="a", hold_timeout=0.05)
    time.sleep(0.1)
    assert locks.acquire_lock("k", holder="b", acquire_timeout=1)
    assert locks.is_lock_holder("k", "b")


@pytest.mark.parametrize("key, holder", [("", "h"), ("k", ""), (None, "h")])
def test_bad_keys_and_holders_are_named(key: object, holder: str) -> None:
    with pytest.raises(ValueError, match="must be a non-empty string"):
        MemoryLockManager().acquire_lock(key, holder=holder)  # type: ignore[arg-type]


def test_a_cache_policy_takes_its_locks_from_a_lock_manager() -> None:
    import threading

    from flowbus import task
    from flowbus.cache_policies import INPUTS
    from flowbus.transactions import IsolationLevel

    class Counting(MemoryLockManager):
        taken: ClassVar[list[str]] = []

        def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                         hold_timeout: float | None = None) -> bool:  # fmt: skip
            Counting.taken.append(key)
            return super().acquire_lock(key, holder, acquire_timeout, hold_timeout)

    ran: list[int] = []
    policy = INPUTS.configure(isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=Counting())

    @task(cache_policy=policy)
    def slow(x: int) -> int:
        ran.append(x)
        threading.Event().wait(0.3)
        return x + 1

    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(slow(1, return_state=True).name)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert ran == [1] and sorted(names) == ["Cached", "Completed"]
    assert len(Counting.taken) == 2 and not Counting().is_locked(Counting.taken[0])
    # as in Prefect, configure takes any lock manager; a run that needs one refuses it
    odd = INPUTS.configure(isolation_level=IsolationLevel.SERIALIZABLE, lock_manager="/path/to/locks")
    assert odd.lock_manager == "/path/to/locks"
    with pytest.raises(TypeError, match="has no acquire_lock/release_lock"):
        task(cache_policy=odd)(slow.fn)(2)


async def test_gathered_async_runs_of_one_serializable_key_take_turns_on_one_loop() -> None:
    from flowbus import flow, task
    from flowbus.cache_policies import INPUTS
    from flowbus.transactions import IsolationLevel

    ran: list[int] = []
    policy = INPUTS.configure(isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=MemoryLockManager())

    @task(cache_policy=policy, persist_result=True)
    async def slow(x: int) -> int:
        ran.append(x)
        await asyncio.sleep(0.2)  # the others wait for the key's lock meanwhile
        return x + 1

    @flow
    async def gathered() -> list[str]:
        states = await asyncio.gather(*(slow(7, return_state=True) for _ in range(3)))
        return sorted(s.name for s in states)

    # The lock used to be waited for on the event loop, which the holder needed: forever.
    names = await asyncio.wait_for(gathered(), 60)
    assert ran == [7] and names == ["Cached", "Cached", "Completed"]
