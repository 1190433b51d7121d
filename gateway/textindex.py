"""The run index's text search: an inverted index from 3-letter grams to runs.

``q`` finds runs whose search text (id, name, flow, deployment, tags, lower-cased)
contains the needle. Every 3-letter slice (gram) of each run's text points to the runs
that have it; the runs that can contain a needle of 3 or more letters are those in the
posting of every gram of the needle, and only they are compared with it. So a search
reads the postings of its grams, not every run.

A gram found in more than ``max(floor, runs * share)`` runs (``-00``, ``dep``) would
cost much memory and narrow nothing: it is dropped and marked common for the life of
the index. A needle whose grams are all common, or shorter than 3 letters, gets no
candidates (``None``): the caller then compares it with every run's text in one pass
done in C (:func:`scan`), or with the runs of a short filter list. The answer is the
same either way, since candidates are always compared with the needle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import repeat
from operator import contains
from typing import Generic, TypeVar

from gateway.bitmaps import mask_of_flags

GRAM = 3
K = TypeVar("K")


def grams(text: str) -> set[str]:
    """The distinct 3-letter slices of ``text``."""
    return {text[i : i + GRAM] for i in range(len(text) - GRAM + 1)}


def scan(texts: list[str], needle: str) -> int:
    """The bitmap of the texts containing ``needle``: bit ``i`` is set when ``texts[i]`` holds it.

    One pass in C: ``str.__contains__`` over the list, one flag byte per text, made a
    bitmap by :func:`gateway.bitmaps.mask_of_flags`.
    The list should be in the order its texts were made (the run index keeps it by slot):
    reading them in memory order is several times faster than in creation-time order.
    """
    return mask_of_flags(bytes(map(contains, texts, repeat(needle))))


class GramIndex(Generic[K]):
    """Postings of the grams of each item's text (items are hashable keys)."""

    def __init__(self, floor: int = 1000, share: float = 0.125) -> None:
        self._postings: dict[str, set[K]] = {}
        self._common: set[str] = set()
        self._floor = floor
        self._share = share
        self._items = 0

    def _limit(self) -> int:
        return max(self._floor, int(self._items * self._share))

    def build(self, items: Iterable[tuple[K, str]]) -> None:
        """Index many items at once (what a starting gateway reads): count, then post."""
        # Grams are cut twice rather than held for every item at once: a starting
        # gateway's peak memory would otherwise be several times the index's.
        pairs = list(items)
        self._items += len(pairs)
        counts: Counter[str] = Counter()
        for _, text in pairs:
            counts.update(grams(text))
        limit = self._limit()
        self._common.update(g for g, n in counts.items() if n > limit)
        del counts
        common, postings = self._common, self._postings
        for key, text in pairs:
            for gram in grams(text):
                if gram not in common:
                    postings.setdefault(gram, set()).add(key)

    def add(self, key: K, text: str) -> None:
        self._items += 1
        limit = self._limit()
        for gram in grams(text):
            if gram in self._common:
                continue
            posting = self._postings.setdefault(gram, set())
            posting.add(key)
            if len(posting) > limit:
                del self._postings[gram]
                self._common.add(gram)

    def remove(self, key: K, text: str) -> None:
        self._items -= 1
        for gram in grams(text):
            posting = self._postings.get(gram)
            if posting is not None:
                posting.discard(key)
                if not posting:
                    del self._postings[gram]

    def candidates(self, needle: str) -> set[K] | None:
        """The items that may contain ``needle``, or ``None`` when the index cannot narrow it."""
        postings: list[set[K]] = []
        for gram in grams(needle):
            if gram in self._common:
                continue
            posting = self._postings.get(gram)
            if posting is None:
                return set()  # no item has this gram, so none contains the needle
            postings.append(posting)
        if not postings:
            return None
        postings.sort(key=len)
        return postings[0].intersection(*postings[1:])

    def __len__(self) -> int:
        """How many grams have a posting."""
        return len(self._postings)
