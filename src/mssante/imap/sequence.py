"""Sequence sets (RFC 3501 §9 `sequence-set`, RFC 5182 `$`).

A set is kept as the ranges the client wrote, never expanded: `1:4294967295` costs
one tuple. Ranges are normalised so that `start <= end`; `None` stands for `*`
(the largest number in use: message count for sequence numbers, highest UID for UIDs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["MAX_NUMBER", "SequenceSet", "parse_sequence_set"]

MAX_NUMBER = 4294967295  # nz-number is a 32-bit unsigned integer
_TOKEN = re.compile(rb"[0-9*]+(?::[0-9*]+)?(?:,[0-9*]+(?::[0-9*]+)?)*")

Range = tuple[int | None, int | None]


@dataclass(frozen=True)
class SequenceSet:
    """`ranges`: (start, end) pairs, inclusive, start <= end; `None` means `*`.

    `5` is (5, 5); `5:*` and `*:5` are (5, None); `*` is (None, None). `saved` is the
    `$` of SEARCHRES (RFC 5182): the server substitutes the saved result, `ranges` is ().
    """

    ranges: tuple[Range, ...]
    saved: bool = False

    def _resolved(self, largest: int) -> list[tuple[int, int]]:
        if self.saved:
            raise ValueError("'$' must be replaced by the saved search result first")
        out: list[tuple[int, int]] = []
        for start, end in self.ranges:
            a = largest if start is None else start
            b = largest if end is None else end
            lo, hi = (a, b) if a <= b else (b, a)
            lo, hi = max(lo, 1), min(hi, largest)
            if lo <= hi:
                out.append((lo, hi))
        return out

    def intervals(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive (lo, hi) intervals within 1..largest.

        `*` is `largest`, so `10:*` with largest 3 is 3:10, clipped to (3, 3), as
        RFC 3501 §6.4.8 requires for `UID FETCH 10:*`. Good for SQL `BETWEEN`.
        """
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(self._resolved(largest)):
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, number: int, largest: int) -> bool:
        """Whether `number` (1..largest) is in the set; O(number of ranges)."""
        if number < 1 or number > largest:
            return False
        return any(lo <= number <= hi for lo, hi in self._resolved(largest))

    def iterate(self, largest: int) -> Iterator[int]:
        """The members within 1..largest, ascending, each once, produced lazily."""
        for lo, hi in self.intervals(largest):
            yield from range(lo, hi + 1)

    @property
    def uses_star(self) -> bool:
        return any(start is None or end is None for start, end in self.ranges)

    def __str__(self) -> str:
        """Wire form, e.g. `1:5,7,9:*`, or `$`."""
        if self.saved:
            return "$"
        parts: list[str] = []
        for start, end in self.ranges:
            a = "*" if start is None else str(start)
            b = "*" if end is None else str(end)
            parts.append(a if a == b else f"{a}:{b}")
        return ",".join(parts)


def _number(text: bytes) -> int | None:
    if text == b"*":
        return None
    if not text.isdigit() or len(text) > 10:
        raise ValueError("invalid number in sequence set")
    value = int(text)
    if value < 1 or value > MAX_NUMBER:
        raise ValueError("sequence number out of range")
    return value


def parse_sequence_set(text: bytes, *, allow_saved: bool = True) -> SequenceSet:
    """Parse `1:5,7,*` or `$`; raises ValueError."""
    if text == b"$":
        if not allow_saved:
            raise ValueError("'$' is not allowed here")
        return SequenceSet((), saved=True)
    if not _TOKEN.fullmatch(text):
        raise ValueError("invalid sequence set")
    ranges: list[Range] = []
    for item in text.split(b","):
        first, _, second = item.partition(b":")
        a = _number(first)
        b = _number(second) if second else a
        if a is None:
            a, b = b, a
        elif b is not None and b < a:
            a, b = b, a
        ranges.append((a, b))
    return SequenceSet(tuple(ranges))
