"""The stored JSON of flow runs the run index keeps, so a list page needs no KV reads.

Bounded by bytes, not by count: the records changed least recently are dropped first
once the budget is spent, and a page holding one of those reads it from the bucket.
"""

from __future__ import annotations

from collections import OrderedDict

# What an entry costs beyond its bytes (the bytes object, the key, the ordered dict's node).
_ENTRY_OVERHEAD = 160


class RecordCache:
    """Run id -> stored JSON, at most ``budget`` bytes (0 keeps nothing)."""

    def __init__(self, budget: int) -> None:
        self._records: OrderedDict[str, bytes] = OrderedDict()
        self._budget = budget
        self.size = 0

    def put(self, run_id: str, raw: bytes) -> None:
        self.drop(run_id)
        cost = len(raw) + _ENTRY_OVERHEAD
        if cost > self._budget:
            return
        self._records[run_id] = raw
        self.size += cost
        while self.size > self._budget:
            _, dropped = self._records.popitem(last=False)
            self.size -= len(dropped) + _ENTRY_OVERHEAD

    def drop(self, run_id: str) -> None:
        raw = self._records.pop(run_id, None)
        if raw is not None:
            self.size -= len(raw) + _ENTRY_OVERHEAD

    def get(self, run_id: str) -> bytes | None:
        return self._records.get(run_id)

    def __len__(self) -> int:
        return len(self._records)
