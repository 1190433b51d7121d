"""An in-memory index of flow runs, kept current by watching the flow-run bucket.

Listing flow runs used to read every record and filter in the gateway: O(all runs)
per request. The index holds one small summary per run (id, creation time, state,
deployment, flow, tags, a search text) in lists sorted by creation time, one list per
filter value, so a page of a filtered list is found by bisection and slicing and only
that page's records are read from KV. A query combining several filters intersects
their sets of runs (starting from the shortest); a text search first asks the gram
index (:mod:`gateway.textindex`) which runs can contain the text, and compares only
those (or, when it cannot narrow the search, makes one pass over the shortest list).

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
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress, repeat
from operator import contains, itemgetter
from sys import intern
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.context import GATEWAY
from gateway.textindex import GramIndex

log = logging.getLogger("flowbus.gateway.runindex")

# (creation time, run id, search text): ordered by time then id; the text rides along so
# a search reads it from the list it walks instead of looking each run up.
Key = tuple[float, str, str]
_RETRY_SECONDS = 1.0
_STOP_SECONDS = 5.0
_NONE: frozenset[Key] = frozenset()


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
    event_id: str | None = None
    key: Key = field(init=False)

    def __post_init__(self) -> None:
        # One tuple shared by every list and set the run is in.
        object.__setattr__(self, "key", (self.created, self.id, self.text))

    def facets(self) -> Iterator[tuple[str, str]]:
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

    def facets(self) -> list[tuple[str, str]]:
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


def summarize(raw: bytes, revision: int) -> RunSummary:
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
        revision=revision,
        event_id=str(event["id"]) if event.get("id") else None,
    )


class RunIndex:
    """Flow-run summaries ordered by creation time, per filter value.

    Until :meth:`finish_load` the index only collects summaries; it then sorts every
    list once, instead of inserting each run of a large bucket in order.
    """

    def __init__(self, cached_records: int = 20_000, common_gram_floor: int = 1000) -> None:
        self._runs: dict[str, RunSummary] = {}
        self._text = GramIndex[Key](floor=common_gram_floor)
        # The stored JSON of the runs changed most recently, so a list page of recent runs
        # needs no KV reads; the rest are read from the bucket.
        self._records: OrderedDict[str, bytes] = OrderedDict()
        self._cached_records = cached_records
        self._all: list[Key] = []
        self._by: dict[tuple[str, str], list[Key]] = {}
        self._sets: dict[tuple[str, str], set[Key]] = {}
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
        if raw is not None:
            try:
                new = summarize(raw, revision)
            except ValidationError:
                log.warning("flow-run record %s is not a valid record; not listed", run_id)
        if old is not None:
            self._remove(old)
            self._records.pop(run_id, None)
        if new is not None and raw is not None:
            self._add(new)
            if self._cached_records:
                self._records[run_id] = raw
                if len(self._records) > self._cached_records:
                    self._records.popitem(last=False)
        for queue in self._listeners:
            if not queue.full():
                queue.put_nowait(run_id)

    def finish_load(self, ids: set[str] | None = None) -> None:
        """The initial values are in: drop runs not among ``ids``, build the sorted lists."""
        if ids is not None:
            for run_id in [r for r in self._runs if r not in ids]:
                self.apply(run_id, None, 0)
        if self._loading:
            self._loading = False
            by: dict[tuple[str, str], list[Key]] = {}
            for run in self._runs.values():
                for facet in run.facets():
                    by.setdefault(facet, []).append(run.key)
            self._all = sorted(run.key for run in self._runs.values())
            self._by = {facet: sorted(keys) for facet, keys in by.items()}
            self._sets = {facet: set(keys) for facet, keys in by.items()}
            self._text.build((run.key, run.text) for run in self._runs.values())
        self.current.set()

    def _add(self, run: RunSummary) -> None:
        self._runs[run.id] = run
        if self._loading:
            return
        insort(self._all, run.key)
        self._text.add(run.key, run.text)
        for facet in run.facets():
            insort(self._by.setdefault(facet, []), run.key)
            self._sets.setdefault(facet, set()).add(run.key)

    def _remove(self, run: RunSummary) -> None:
        del self._runs[run.id]
        if self._loading:
            return
        _discard(self._all, run.key)
        self._text.remove(run.key, run.text)
        for facet in run.facets():
            keys = self._by.get(facet)
            if keys is not None:
                _discard(keys, run.key)
                self._sets[facet].discard(run.key)
                if not keys:
                    del self._by[facet], self._sets[facet]

    def query(self, where: RunFilter, offset: int, limit: int) -> tuple[list[str], int]:
        """Ids of one page (newest first) and how many runs match in all."""
        lo_key = (where.since.timestamp(), "", "") if where.since else (float("-inf"), "", "")
        hi_key = (where.until.timestamp(), "", "") if where.until else (float("inf"), "", "")
        facets = where.facets()
        ranges: list[tuple[tuple[str, str], list[Key], int, int]] = []
        for facet in facets or [("", "")]:
            keys = self._by.get(facet, []) if facet[0] else self._all
            lo = bisect_left(keys, lo_key)
            ranges.append((facet, keys, lo, max(lo, bisect_left(keys, hi_key))))
        driver, keys, lo, hi = min(ranges, key=lambda r: r[3] - r[2])
        needle = where.text.lower() if where.text else None
        if len(facets) <= 1 and needle is None:
            # One ordered list answers it: the page is a slice, the total a subtraction.
            start = max(hi - offset, lo)
            stop = max(start - limit, lo)
            return [keys[i][1] for i in range(start - 1, stop - 1, -1)], hi - lo
        found = self._text.candidates(needle) if needle is not None else None
        if found is not None and len(found) < hi - lo:
            # The runs that can hold the text are fewer than the shortest list: sort those.
            matched = sorted(k for k in found if lo_key <= k < hi_key)
            driver = ("", "")
        else:
            # Narrow the shortest range by the other filters, keeping its order. Each step
            # is a chain of built-in iterators (filter, map, compress), so the per-run cost
            # is paid in C rather than in Python bytecode.
            matched = keys[lo:hi]
            if found is not None:
                matched = list(filter(found.__contains__, matched))
        for facet in facets:
            if facet != driver:
                matched = list(filter(self._sets.get(facet, _NONE).__contains__, matched))
        if needle is not None:
            texts = map(itemgetter(2), matched)
            matched = list(compress(matched, map(contains, texts, repeat(needle))))
        total = len(matched)
        page = matched[max(0, total - offset - limit) : max(0, total - offset)]
        return [k[1] for k in reversed(page)], total

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
            lo = bisect_left(self._all, (edge, "", ""))
            hi = bisect_left(self._all, (min(edge + step, end), "", ""))
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


def _discard(keys: list[Key], key: Key) -> None:
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]


RUN_INDEX = web.AppKey("run_index", RunIndex)


class _Pass:
    """One read of the bucket: the keys of its initial values, then live changes."""

    def __init__(self, index: RunIndex) -> None:
        self.index = index
        self.seen: set[str] | None = set()

    def caught_up(self) -> None:
        self.index.finish_load(self.seen)
        self.seen = None

    def take(self, key: str, value: bytes | None, revision: int) -> None:
        if self.seen is not None:
            self.seen.add(key)
        self.index.apply(key, value, revision)


async def follow(index: RunIndex, app: web.Application, stop: asyncio.Event) -> None:
    """Keep ``index`` equal to the flow-run bucket until ``stop``; re-read after a failure."""
    gateway = app[GATEWAY]
    kv = await gateway.kv(gateway.bus.layout.flow_runs)
    while not stop.is_set():
        reading = _Pass(index)
        try:
            async for change in kv.watch(on_current=reading.caught_up):
                reading.take(change.key, change.value, change.revision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NATS went away: watch again once it is back
            if stop.is_set():
                return  # a cancellation the NATS client turned into an error
            log.warning("flow-run index watch failed (%s: %s); watching again",
                        type(exc).__name__, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _RETRY_SECONDS)


async def run_index_ctx(app: web.Application) -> AsyncIterator[None]:
    """The task that keeps the app's run index current (an aiohttp cleanup context).

    Shutdown is bounded: the task is cancelled (again, if the NATS client swallowed a
    cancellation) for at most ``_STOP_SECONDS``.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(follow(app[RUN_INDEX], app, stop), name="flowbus-run-index")
    try:
        yield
    finally:
        stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STOP_SECONDS
        while not task.done() and loop.time() < deadline:
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("flow-run index task ended with %r", task.exception())
        elif not task.done():
            log.warning("flow-run index task did not stop within %s s", _STOP_SECONDS)
