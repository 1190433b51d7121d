"""An in-memory index of flow runs, kept current by watching the flow-run bucket.

Listing flow runs used to read every record and filter in the gateway: O(all runs)
per request. The index holds one small summary per run (id, creation time, state,
deployment, flow, tags, a search text) and, per filter value, the list of its runs
sorted by creation time, so a page with one filter is found by bisection and slicing.
Each run also has a slot (a small integer); a filter value with many runs keeps a
bitmap of their slots (:mod:`gateway.bitmaps`). A query combining filters walks the
shortest list (within the time range) newest first and keeps the runs whose slot is
in the ``&`` of the others' bitmaps, stopping once the page is full: the total is the
bit count of that ``&``. A sparse result is read off the bitmap instead of walked to.
A text search asks the gram index (:mod:`gateway.textindex`) which runs can contain
the text, compares only those, and takes them as one more bitmap (or as the list to
walk, when they are the fewest); a text no gram narrows is compared with every run's
text in one pass done in C (:func:`gateway.textindex.scan`), which gives its bitmap,
and a time range over many runs is likewise a bitmap from their creation times
(:func:`gateway.bitmaps.between`). Only the page's records are read, most of them from
the records the index keeps (:mod:`gateway.runrecords`).

Every gateway process keeps its own index; it follows the bucket through a KV watch,
so a run written by the orchestrator or a runner is listed a moment later.

>>> index = RunIndex()
>>> index.apply("r1", b'{"id": "r1", ...}', 1)   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress, repeat
from operator import contains, itemgetter
from sys import intern
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.bitmaps import Bitmap, between, mask_of, slots_of
from gateway.runpages import Key, page, top, walk
from gateway.runrecords import RecordCache
from gateway.textindex import GramIndex, scan

log = logging.getLogger("flowbus.gateway.runindex")

# A run's Key (gateway.runpages) is (creation time, run id, search text, slot): ordered
# by time then id; the text rides along so a search reads it from the list it walks,
# the slot so a walk tests bitmaps.
Facet = tuple[str, str]
_CREATED: Callable[[Key], float] = itemgetter(0)
_TEXT: Callable[[Key], str] = itemgetter(2)
# A filter value with at least this many runs keeps a bitmap (dropped below a quarter).
BITMAP_FLOOR = 256
# A result this much sparser than the list it would walk is read off its bitmap.
_SPARSE = 16
# A text no gram narrows is compared with every run's text in one pass in C (by slot,
# into a bitmap) unless the list walked holds under this share of the runs: then only
# the runs walked are compared with it. A time range over this share of a list is
# likewise found by one pass over the runs' creation times.
SCAN_SHARE = 0.25
# A gram in more than this many runs (and an eighth of them) is common (gateway.textindex).
COMMON_GRAM_FLOOR = 1000
_FREE = float("nan")  # the creation time of a free slot: in no range


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the index knows of one run: enough to filter and order, not the record."""

    id: str
    created: float
    state: str
    deployment_name: str | None
    deployment_id: str | None
    flow: str
    tags: tuple[str, ...]
    text: str
    revision: int
    slot: int
    event_id: str | None = None
    key: Key = field(init=False)

    def __post_init__(self) -> None:
        # One tuple shared by every list the run is in.
        object.__setattr__(self, "key", (self.created, self.id, self.text, self.slot))

    def facets(self) -> Iterator[Facet]:
        """The (dimension, value) pairs this run is listed under."""
        yield ("state", self.state)
        yield ("flow", self.flow)
        for dep in {self.deployment_name, self.deployment_id}:
            if dep is not None:
                yield ("deployment", dep)
        for tag in set(self.tags):
            yield ("tag", tag)
        if self.event_id is not None:
            yield ("event", self.event_id)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """A list query: exact filters, a creation-time range and a text to find."""

    state: str | None = None
    deployment: str | None = None
    flow: str | None = None
    tag: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    event: str | None = None

    def facets(self) -> list[Facet]:
        pairs = [("state", self.state), ("deployment", self.deployment), ("flow", self.flow),
                 ("tag", self.tag), ("event", self.event)]
        return [(dim, value) for dim, value in pairs if value is not None]


class _StateName(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str


class IndexedFields(BaseModel):
    """The fields of a stored :class:`FlowRun` the index reads (same names; the rest skipped).

    Parsing only these is several times faster than the whole record, which matters
    when a gateway starts over a bucket of many runs.
    """

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    flow_name: str
    deployment_id: str | None = None
    deployment_name: str | None = None
    tags: list[str] = Field(default_factory=list)
    state: _StateName
    created: datetime
    triggering_event: dict[str, Any] | None = None


def _intern(value: str | None) -> str | None:
    return None if value is None else intern(value)


def summarize(raw: bytes, revision: int, slot: int = 0) -> RunSummary:
    """The summary of a stored record (raises ``ValidationError`` for a record that is not one)."""
    run = IndexedFields.model_validate_json(raw)
    event = run.triggering_event or {}
    text = " ".join(filter(None, (run.id, run.name, run.flow_name, run.deployment_name,
                                  *run.tags))).lower()
    # Names repeat across many runs: interned, each is held once.
    return RunSummary(
        id=run.id, created=run.created.timestamp(), state=intern(run.state.name),
        deployment_name=_intern(run.deployment_name), deployment_id=_intern(run.deployment_id),
        flow=intern(run.flow_name), tags=tuple(intern(t) for t in run.tags), text=text,
        revision=revision, slot=slot,
        event_id=str(event["id"]) if event.get("id") else None,
    )


@dataclass(slots=True)
class _Plan:
    """How one query is answered: the list walked (within its range) and what filters it."""

    keys: list[Key]
    lo: int
    hi: int
    mask: int | None  # the runs the other filters allow (None: no other filter)
    whole: bool  # the walked list's bitmap is ``whole_mask``: the total is a bit count
    whole_mask: int | None
    needle: str | None  # a text still to compare with each run walked
    unsorted: bool  # ``keys`` are the runs holding the text, in no order


class RunIndex:
    """Flow-run summaries ordered by creation time, per filter value.

    Until :meth:`finish_load` the index only collects summaries; it then sorts every
    list once, instead of inserting each run of a large bucket in order.
    """

    def __init__(self, cached_bytes: int = 128 * 2**20, common_gram_floor: int | None = None,
                 bitmap_floor: int | None = None, scan_share: float | None = None) -> None:
        self._runs: dict[str, RunSummary] = {}
        self._text = GramIndex[Key](
            floor=COMMON_GRAM_FLOOR if common_gram_floor is None else common_gram_floor)
        # The stored JSON of the runs changed most recently, so a list page needs no KV
        # reads while they fit the budget; the rest are read from the bucket.
        self._records = RecordCache(cached_bytes)
        self._all: list[Key] = []
        self._by: dict[Facet, list[Key]] = {}
        self._bits: dict[Facet, Bitmap] = {}
        self._bitmap_floor = BITMAP_FLOOR if bitmap_floor is None else bitmap_floor
        self._scan_share = SCAN_SHARE if scan_share is None else scan_share
        self._free: list[int] = []
        self._slots = 0
        self._keys: list[Key | None] = []  # by slot
        self._texts: list[str] = []  # by slot, "" for a free one: what a scan reads
        self._created: list[float] = []  # by slot, NaN for a free one
        self._listeners: set[asyncio.Queue[str]] = set()
        self._loading = True
        self.current = asyncio.Event()
        self.revision = 0
        self._advanced = asyncio.Event()  # set, then replaced, whenever a change is applied

    def __len__(self) -> int:
        return len(self._runs)

    def apply(self, run_id: str, raw: bytes | None, revision: int) -> None:
        """Take one change of the bucket: a new or changed record, or a delete (``raw`` None)."""
        self.revision = max(self.revision, revision)
        self._advanced.set()
        self._advanced = asyncio.Event()
        old = self._runs.get(run_id)
        if old is not None and revision and revision < old.revision:
            return  # an older value arriving late
        new: RunSummary | None = None
        slot = old.slot if old is not None else None
        if raw is not None:
            slot = self._slot() if slot is None else slot
            try:
                new = summarize(raw, revision, slot)
            except ValidationError:
                log.warning("flow-run record %s is not a valid record; not listed", run_id)
        if old is not None:
            self._remove(old)
            self._records.drop(run_id)
        if new is not None and raw is not None:
            self._add(new)
            self._records.put(run_id, raw)
        elif slot is not None:
            self._free.append(slot)  # the run is gone, or its record is not a run
        for queue in self._listeners:
            if not queue.full():
                queue.put_nowait(run_id)

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        self._slots += 1
        return self._slots - 1

    def finish_load(self, ids: set[str] | None = None) -> None:
        """The initial values are in: drop runs not among ``ids``, build the sorted lists."""
        if ids is not None:
            for run_id in [r for r in self._runs if r not in ids]:
                self.apply(run_id, None, 0)
        if self._loading:
            self._loading = False
            by: dict[Facet, list[Key]] = {}
            for run in self._runs.values():
                for facet in run.facets():
                    by.setdefault(facet, []).append(run.key)
            self._all = sorted(run.key for run in self._runs.values())
            for keys in by.values():
                keys.sort()
            self._by = by
            for facet, keys in by.items():
                if len(keys) >= self._bitmap_floor:
                    self._bits[facet] = _bitmap(keys)
            self._text.build((run.key, run.text) for run in self._runs.values())
        self.current.set()

    def _add(self, run: RunSummary) -> None:
        self._runs[run.id] = run
        if run.slot >= len(self._keys):
            self._keys.extend([None] * (run.slot + 1 - len(self._keys)))
            self._texts.extend([""] * (run.slot + 1 - len(self._texts)))
            self._created.extend([_FREE] * (run.slot + 1 - len(self._created)))
        self._keys[run.slot] = run.key
        self._texts[run.slot] = run.text
        self._created[run.slot] = run.created
        if self._loading:
            return
        insort(self._all, run.key)
        self._text.add(run.key, run.text)
        for facet in run.facets():
            keys = self._by.setdefault(facet, [])
            insort(keys, run.key)
            bits = self._bits.get(facet)
            if bits is not None:
                bits.add(run.slot)
            elif len(keys) >= self._bitmap_floor:
                self._bits[facet] = _bitmap(keys)

    def _remove(self, run: RunSummary) -> None:
        del self._runs[run.id]
        self._keys[run.slot] = None
        self._texts[run.slot] = ""
        self._created[run.slot] = _FREE
        if self._loading:
            return
        _discard(self._all, run.key)
        self._text.remove(run.key, run.text)
        for facet in run.facets():
            keys = self._by.get(facet)
            if keys is None:
                continue
            _discard(keys, run.key)
            bits = self._bits.get(facet)
            if bits is not None:
                bits.discard(run.slot)
                if len(keys) < self._bitmap_floor // 4:
                    del self._bits[facet]
            if not keys:
                del self._by[facet]

    def _mask(self, facet: Facet) -> int:
        bits = self._bits.get(facet)
        if bits is not None:
            return bits.value()
        return mask_of(k[3] for k in self._by.get(facet, ()))

    def _plan(self, where: RunFilter) -> _Plan | None:
        """Choose the list to walk (the shortest in the time range) and the others' bitmap;
        None when some filter matches nothing."""
        since = where.since.timestamp() if where.since else None
        until = where.until.timestamp() if where.until else None
        timed = since is not None or until is not None

        def span(keys: list[Key]) -> tuple[list[Key], int, int]:
            lo = 0 if since is None else bisect_left(keys, since, key=_CREATED)
            hi = len(keys) if until is None else bisect_left(keys, until, key=_CREATED)
            return keys, lo, max(lo, hi)

        facets = where.facets()
        spans = {facet: span(self._by.get(facet, [])) for facet in facets}
        if any(hi == lo for _, lo, hi in spans.values()):
            return None
        driver: Facet | None = min(spans, key=lambda f: spans[f][2] - spans[f][1], default=None)
        keys, lo, hi = spans[driver] if driver is not None else span(self._all)
        needle = where.text.lower() if where.text else None
        text_mask: int | None = None
        text_drives = False
        if needle is not None:
            found = self._text.candidates(needle)
            if found is None and hi - lo >= len(self._runs) * self._scan_share:
                text_mask = scan(self._texts, needle)
                if not text_mask:
                    return None
                needle = None
            elif found is not None:
                exact = [k for k in found if needle in k[2]]
                if not exact:
                    return None
                if len(exact) < hi - lo:  # the runs holding the text are the fewest: walk them
                    keys = [k for k in exact if (since is None or k[0] >= since)
                            and (until is None or k[0] < until)]
                    lo, hi = 0, len(keys)
                    text_drives = True
                else:
                    text_mask = mask_of(k[3] for k in exact)
                needle = None
        mask = text_mask
        for facet in facets:
            if text_drives or facet != driver:
                mask = self._mask(facet) if mask is None else mask & self._mask(facet)
        # Without a time range or a text to compare, the walked list's bitmap and the
        # others' give the total at once.
        whole = not timed and needle is None and not text_drives
        whole_mask = self._mask(driver) if whole and driver is not None else None
        if (timed and mask is not None and needle is None and not text_drives
                and hi - lo >= len(self._runs) * self._scan_share):
            # A long stretch of a list in a time range: its runs are those created in
            # the range (one pass over creation times in C) that are in the list.
            whole = True
            whole_mask = between(self._created, since, until)
            if driver is not None:
                whole_mask &= self._mask(driver)
        return _Plan(keys, lo, hi, mask, whole, whole_mask, needle, text_drives)

    def query(self, where: RunFilter, offset: int, limit: int) -> tuple[list[str], int]:
        """Ids of one page (newest first) and how many runs match in all."""
        plan = self._plan(where)
        if plan is None:
            return [], 0
        keys, lo, hi, mask = plan.keys, plan.lo, plan.hi, plan.mask
        if plan.unsorted:
            if mask is not None:
                has = self._has(mask)
                keys = [k for k in keys if has(k[3])]
            return top(keys, offset, limit), len(keys)
        if mask is None and plan.needle is None:
            # One ordered list answers it: the page is a slice, the total a subtraction.
            start = max(hi - offset, lo)
            stop = max(start - limit, lo)
            return [keys[i][1] for i in range(start - 1, stop - 1, -1)], hi - lo
        if mask is None:
            # Only a text the gram index cannot narrow: compare it with each run in C.
            assert plan.needle is not None
            window = keys[lo:hi]
            matched = list(compress(window, map(contains, map(_TEXT, window),
                                                repeat(plan.needle))))
            return page(matched, offset, limit), len(matched)
        if plan.whole:
            both = mask if plan.whole_mask is None else mask & plan.whole_mask
            total = both.bit_count()
            if total * _SPARSE < hi - lo:
                found = sorted(self._key(slot) for slot in slots_of(both))
                return page(found, offset, limit), total
            return walk(keys, lo, hi, self._has(both), offset, limit, total), total
        has = self._has(mask)
        window = keys[lo:hi]
        if plan.needle is not None:
            needle = plan.needle
            matched = [k for k in window if has(k[3]) and needle in k[2]]
        else:
            matched = [k for k in window if has(k[3])]
        return page(matched, offset, limit), len(matched)

    def _has(self, mask: int) -> Callable[[int], int]:
        """A test of one slot against ``mask`` (reads a bytes copy: no big-integer shifts)."""
        data = mask.to_bytes((self._slots + 7) >> 3 or 1, "little")
        return lambda slot: data[slot >> 3] >> (slot & 7) & 1

    def _key(self, slot: int) -> Key:
        key = self._keys[slot]
        assert key is not None, f"slot {slot} is in a bitmap but holds no run"
        return key

    def record(self, run_id: str) -> bytes | None:
        """The stored JSON of a run, if it is among the cached ones."""
        return self._records.get(run_id)

    async def wait_revision(self, revision: int) -> None:
        """Wait until the index is loaded and has seen the bucket up to ``revision``
        (bound it by a timeout)."""
        await self.current.wait()
        while self.revision < revision:
            advanced = self._advanced
            await advanced.wait()

    def count(self, where: RunFilter) -> int:
        """How many runs match (cheap for one filter and a time range: two bisections)."""
        return self.query(where, 0, 0)[1]

    def histogram(self, start: float, end: float, step: float) -> list[tuple[float, int]]:
        """Runs created per ``step`` seconds from ``start`` to ``end`` (bucket start, count)."""
        out: list[tuple[float, int]] = []
        edge = start
        while edge < end:
            lo = bisect_left(self._all, edge, key=_CREATED)
            hi = bisect_left(self._all, min(edge + step, end), key=_CREATED)
            out.append((edge, hi - lo))
            edge += step
        return out

    @contextlib.contextmanager
    def changes(self, size: int = 1024) -> Iterator[asyncio.Queue[str]]:
        """A bounded queue of ids of runs that change while the block runs (extra ones dropped)."""
        queue: asyncio.Queue[str] = asyncio.Queue(size)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)


def _bitmap(keys: list[Key]) -> Bitmap:
    bits = Bitmap()
    for key in keys:
        bits.add(key[3])
    return bits


def _discard(keys: list[Key], key: Key) -> None:
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]


RUN_INDEX = web.AppKey("run_index", RunIndex)
