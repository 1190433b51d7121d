"""The run index's pieces of pure logic: its byte-bounded record cache and its bitmaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.bitmaps import Bitmap, mask_of, slots_of
from gateway.runrecords import RecordCache


def test_the_record_cache_drops_the_least_recently_changed_once_over_its_budget() -> None:
    cache = RecordCache(budget=3 * (100 + 160))
    for name in ("a", "b", "c"):
        cache.put(name, b"x" * 100)
    assert len(cache) == 3 and cache.size == 3 * 260
    cache.put("a", b"y" * 100)  # changed: now the most recent
    cache.put("d", b"z" * 100)
    assert cache.get("b") is None and cache.get("a") == b"y" * 100 and len(cache) == 3
    cache.put("huge", b"h" * 10_000)  # over the whole budget: not kept, nothing dropped
    assert cache.get("huge") is None and len(cache) == 3
    cache.drop("a")
    assert cache.get("a") is None and cache.size == 2 * 260
    assert len(RecordCache(budget=0)) == 0


@given(st.sets(st.integers(0, 5000)), st.sets(st.integers(0, 5000)))
def test_bitmaps_hold_exactly_the_slots_added_and_not_removed(
    added: set[int], removed: set[int],
) -> None:
    bits = Bitmap()
    for slot in added:
        bits.add(slot)
    for slot in removed:
        bits.discard(slot)
    assert slots_of(bits.value()) == sorted(added - removed)
    assert slots_of(mask_of(added) & mask_of(removed)) == sorted(added & removed)
    assert (mask_of(added) & bits.value()).bit_count() == len(added - removed)
