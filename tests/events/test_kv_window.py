"""Windowed KV reads and compare-and-set writes against a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from events.bus import Bus
from events.errors import BusUnavailable, UpdateConflict
from events.kv_window import KVWindow


async def test_calls_made_together_each_get_their_own_outcome(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.task_runs)
    first = await kv.create("a", b"1")
    second = await kv.create("b", b"2")
    await kv.create("gone", b"x")
    await kv.delete("gone")
    window = await KVWindow.open(bus, bus.layout.task_runs)
    try:
        # One moment: reads of a present, an absent and a deleted key, a write at the
        # right revision and one at a stale revision.
        outcomes = await asyncio.gather(
            window.get("a"), window.get("missing"), window.get("gone"),
            window.cas("a", b"1+", first), window.cas("b", b"2+", second - 1),
            return_exceptions=True)
    finally:
        await window.close()
    read_a, missing, gone, written, stale = outcomes
    assert read_a is not None and not isinstance(read_a, BaseException)
    assert (read_a.key, read_a.value, read_a.revision) == ("a", b"1", first)
    assert missing is None and gone is None
    assert isinstance(written, int) and written > first
    assert isinstance(stale, UpdateConflict)
    after_a, after_b = await kv.get("a"), await kv.get("b")
    assert after_a is not None and (after_a.value, after_a.revision) == (b"1+", written)
    assert after_b is not None and after_b.value == b"2"  # the stale write changed nothing


async def test_a_claim_race_is_won_once(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.task_runs)
    revision = await kv.create("run", b"Scheduled")
    windows = [await KVWindow.open(bus, bus.layout.task_runs) for _ in range(4)]
    try:
        outcomes = await asyncio.gather(
            *(w.cas("run", f"Running by {i}".encode(), revision) for i, w in enumerate(windows)),
            return_exceptions=True)
    finally:
        for window in windows:
            await window.close()
    won = [i for i, o in enumerate(outcomes) if isinstance(o, int)]
    assert len(won) == 1
    assert all(isinstance(o, UpdateConflict) for o in outcomes if not isinstance(o, int))
    entry = await kv.get("run")
    assert entry is not None and entry.value == f"Running by {won[0]}".encode()


async def test_a_closed_window_refuses_calls(bus: Bus) -> None:
    window = await KVWindow.open(bus, bus.layout.task_runs)
    await window.close()
    with pytest.raises(BusUnavailable, match="closed"):
        await window.get("a")
