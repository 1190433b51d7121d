"""Prefect 3.8.8's lock-manager behaviour on flowbus (each checked on Prefect first):
hold timeouts read through the module's clock, pickling the memory manager, the
lock methods of ``ResultStore``, and a lock shared by two processes."""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import cloudpickle  # type: ignore[import-untyped]
import pytest

from flowbus.exceptions import ConfigurationError
from flowbus.locking import filesystem
from flowbus.locking.filesystem import FileSystemLockManager
from flowbus.locking.memory import MemoryLockManager
from flowbus.results import ResultStore
from flowbus.types._datetime import now, parse_datetime
from flowbus.utilities.callables import cloudpickle_wrapped_call


class _Clock:
    def __init__(self) -> None:
        self.offset = datetime.timedelta()

    def now(self, tz: str = "UTC") -> datetime.datetime:
        return now(tz) + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(filesystem, "now", clock.now)
    return clock


def test_now_and_parse_datetime_are_aware() -> None:
    assert now().tzinfo is not None and now("Europe/Paris").utcoffset() is not None
    assert parse_datetime("2026-01-01T09:00").tzinfo is not None
    assert parse_datetime("2026-01-01T09:00+02:00").utcoffset() == datetime.timedelta(hours=2)
    with pytest.raises(ValueError, match="unknown time zone 'Nowhere/Atlantis'"):
        now("Nowhere/Atlantis")
    with pytest.raises(ValueError, match="not a datetime: 'soon'"):
        parse_datetime("soon")


def test_a_file_lock_lapses_when_the_clock_passes_its_hold_timeout(tmp_path: Path, clock: _Clock) -> None:
    locks = FileSystemLockManager(tmp_path)
    assert locks.acquire_lock("k", holder="a", hold_timeout=10)
    assert locks.is_locked("k") and locks.is_lock_holder("k", "a")
    clock.offset += datetime.timedelta(seconds=11)
    assert not locks.is_locked("k") and not locks.is_lock_holder("k", "a")
    assert locks.wait_for_lock("k", timeout=1)
    assert locks.acquire_lock("k", holder="b", acquire_timeout=1)
    with pytest.raises(ValueError, match="No lock held by a for transaction with key k"):
        locks.release_lock("k", holder="a")
    locks.release_lock("k", holder="b")


def test_another_manager_breaks_a_lapsed_file_lock(tmp_path: Path, clock: _Clock) -> None:
    first, second = FileSystemLockManager(tmp_path), FileSystemLockManager(tmp_path)
    assert first.acquire_lock("k", holder="a", hold_timeout=10)
    assert second.acquire_lock("k", holder="b", acquire_timeout=0.1) is False
    clock.offset += datetime.timedelta(seconds=11)
    assert second.acquire_lock("k", holder="b", acquire_timeout=1)
    assert not first.is_lock_holder("k", "a") and first.is_locked("k")
    second.release_lock("k", holder="b")
    assert not first.is_locked("k")


async def test_file_locks_async_forms(tmp_path: Path) -> None:
    locks = FileSystemLockManager(tmp_path)
    assert await locks.aacquire_lock("k", holder="a")
    assert await locks.await_for_lock("k", timeout=0.1) is False
    locks.release_lock("k", holder="a")
    assert await locks.await_for_lock("k")


_HOLD = """
import sys, time
from flowbus.locking.filesystem import FileSystemLockManager
locks = FileSystemLockManager(sys.argv[1])
assert locks.acquire_lock("shared", holder="child")
print("held", flush=True)
sys.stdin.readline()
locks.release_lock("shared", holder="child")
print("released", flush=True)
"""


def test_a_file_lock_excludes_another_process(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:  # fmt: skip
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "held"
            locks = FileSystemLockManager(tmp_path)
            assert locks.is_locked("shared")
            assert locks.acquire_lock("shared", holder="parent", acquire_timeout=0.2) is False
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "released"
            assert locks.acquire_lock("shared", holder="parent", acquire_timeout=30)
            locks.release_lock("shared", holder="parent")
        finally:
            child.kill()
            child.wait(timeout=30)


def test_a_pickled_memory_manager_is_the_process_manager(caplog: pytest.LogCaptureFixture) -> None:
    manager = MemoryLockManager()
    assert cloudpickle.loads(cloudpickle.dumps(manager)) is manager
    assert manager.acquire_lock("pickled", holder="h")
    try:
        with caplog.at_level(logging.WARNING, logger="flowbus.locking.memory"):
            copy = cloudpickle.loads(cloudpickle.dumps(manager))
        assert copy is manager and copy.is_lock_holder("pickled", "h")
        assert "lock information will not be available after deserialization" in caplog.text.lower()
    finally:
        manager.release_lock("pickled", holder="h")


def _sees_lock(payload: bytes) -> tuple[bool, bool]:
    manager = cloudpickle.loads(payload)
    return manager.is_locked("across"), manager.is_lock_holder("across", "h")


@pytest.mark.parametrize("method, expected", [("spawn", (False, False)), ("fork", (True, True))])
def test_memory_locks_reach_a_forked_child_only(method: str, expected: tuple[bool, bool]) -> None:
    manager = MemoryLockManager()
    assert manager.acquire_lock("across", holder="h")
    try:
        payload = cloudpickle.dumps(manager)
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(method)) as pool:
            result = pool.submit(cloudpickle_wrapped_call(partial(_sees_lock, payload))).result(timeout=120)
        assert cloudpickle.loads(result) == expected
    finally:
        manager.release_lock("across", holder="h")


def test_result_store_locks_through_its_lock_manager() -> None:
    store = ResultStore(lock_manager=MemoryLockManager())
    assert store.acquire_lock("store-k")  # default holder: this host, process and thread
    assert store.is_locked("store-k") and store.is_lock_holder("store-k")
    assert store.generate_default_holder().count(":") == 3

    def other_thread() -> None:
        assert not store.is_lock_holder("store-k")
        assert store.acquire_lock("store-k", timeout=0.05) is False

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=30)
    assert not store.wait_for_lock("store-k", timeout=0.05)
    store.release_lock("store-k")
    assert store.wait_for_lock("store-k") and not store.is_locked("store-k")


async def test_result_store_async_locks_hold_per_asyncio_task() -> None:
    store = ResultStore(lock_manager=MemoryLockManager())
    assert await store.aacquire_lock("store-a")
    assert store.generate_default_holder().count(":") == 4  # the task's id is part of it
    assert await store.await_for_lock("store-a", timeout=0.05) is False
    store.release_lock("store-a")
    assert await store.await_for_lock("store-a")


def test_result_store_without_lock_manager_says_so() -> None:
    with pytest.raises(ConfigurationError, match="not configured with a lock manager"):
        ResultStore().acquire_lock("k")
    with pytest.raises(ConfigurationError, match="not configured with a lock manager"):
        ResultStore().is_locked("k")
