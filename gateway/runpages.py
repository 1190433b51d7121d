"""Pages of the run index's ordered lists: which runs of a list (or set) a page holds.

The run index keeps its runs ordered oldest first; a page is counted from the newest.
These helpers cut one page of ``limit`` runs after skipping ``offset``, from a list that
matched in full, from runs in no order, or by walking a list against a bitmap test
and stopping once the page is full.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import nlargest

# (creation time, run id, search text, slot), as the run index orders its lists.
Key = tuple[float, str, str, int]


def top(matched: list[Key], offset: int, limit: int) -> list[str]:
    """Ids of the page ``offset``/``limit`` of ``matched`` (in no order), newest first."""
    wanted = offset + limit
    best = nlargest(wanted, matched) if wanted * 8 < len(matched) else sorted(matched, reverse=True)
    return [k[1] for k in best[offset:wanted]]


def page(matched: list[Key], offset: int, limit: int) -> list[str]:
    """Ids of the page ``offset``/``limit`` of ``matched`` (oldest first), newest first."""
    total = len(matched)
    cut = matched[max(0, total - offset - limit) : max(0, total - offset)]
    return [k[1] for k in reversed(cut)]


def walk(keys: list[Key], lo: int, hi: int, has: Callable[[int], int], offset: int,
          limit: int, total: int) -> list[str]:
    """The page of the ``total`` runs of ``keys[lo:hi]`` that pass ``has``, walking from
    the nearer end and stopping once the page is full."""
    out: list[str] = []
    if offset >= total or limit <= 0:
        return out
    if offset * 2 <= total:
        seen = 0
        for i in range(hi - 1, lo - 1, -1):
            if has(keys[i][3]):
                if seen >= offset:
                    out.append(keys[i][1])
                    if len(out) >= limit:
                        break
                seen += 1
        return out
    first = max(0, total - offset - limit)  # rank, oldest first, of the page's oldest run
    last = total - offset  # one past the page's newest
    seen = 0
    for i in range(lo, hi):
        if has(keys[i][3]):
            if seen >= first:
                out.append(keys[i][1])
            seen += 1
            if seen >= last:
                break
    out.reverse()
    return out
