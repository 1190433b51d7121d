"""Sets of small integers (a run's slot in the run index) as bitmaps.

A bitmap of 100,000 runs is 12.5 KB; intersecting two is one ``&`` of Python integers
and counting the result one ``int.bit_count()``, both done in C. The run index keeps a
bitmap for each filter value with many runs (a state, a flow, a tag) and combines them
instead of testing runs one by one.

>>> bits = Bitmap()
>>> bits.add(3); bits.add(10)
>>> slots_of(bits.value() & mask_of([10, 11]))
[10]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import repeat
from operator import eq, le, lt

_NONZERO = re.compile(rb"[^\x00]")
# Flag bytes (0 or 1) to binary digits, so ``int(..., 2)`` makes them a bitmap.
_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


class Bitmap:
    """A mutable set of slots (non-negative integers), one bit each."""

    __slots__ = ("_bits",)

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, slot: int) -> None:
        byte = slot >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte + 1 - len(self._bits)))
        self._bits[byte] |= 1 << (slot & 7)

    def discard(self, slot: int) -> None:
        byte = slot >> 3
        if byte < len(self._bits):
            self._bits[byte] &= ~(1 << (slot & 7)) & 0xFF

    def value(self) -> int:
        """The set as an integer (bit ``slot`` set for each member)."""
        return int.from_bytes(self._bits, "little")

    def __len__(self) -> int:
        """Bytes held."""
        return len(self._bits)


def mask_of(slots: Iterable[int]) -> int:
    """The integer with the bits of ``slots`` set."""
    bits = Bitmap()
    for slot in slots:
        bits.add(slot)
    return bits.value()


def slots_of(mask: int) -> list[int]:
    """The set bits of ``mask``, ascending (zero bytes are skipped in C)."""
    data = mask.to_bytes((mask.bit_length() + 7) >> 3, "little")
    out: list[int] = []
    for found in _NONZERO.finditer(data):
        at = found.start()
        byte, base = data[at], at << 3
        while byte:
            low = byte & -byte
            out.append(base + low.bit_length() - 1)
            byte ^= low
    return out


def mask_of_flags(flags: bytes) -> int:
    """The integer with bit ``i`` set where ``flags[i]`` is 1 (each flag 0 or 1), in C.

    The flags are read as the digits of a binary number, most significant first, hence
    reversed; ``int(..., 2)`` is linear for a power-of-two base.
    """
    return int(flags[::-1].translate(_DIGITS), 2) if flags else 0


def between(values: list[float], since: float | None, until: float | None) -> int:
    """The bits ``i`` with ``since <= values[i] < until`` (a bound of None is no bound);
    a NaN value is never in range. One pass in C per bound."""
    passes = [] if since is None else [bytes(map(le, repeat(since), values))]
    if until is not None:
        passes.append(bytes(map(lt, values, repeat(until))))
    if not passes:
        passes.append(bytes(map(eq, values, values)))  # every value but NaN
    mask = -1
    for flags in passes:
        mask &= mask_of_flags(flags)
    return mask
