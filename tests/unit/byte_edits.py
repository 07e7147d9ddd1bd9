"""Cutting and mutating recorded byte streams, for the protocol fuzz tests."""

from __future__ import annotations

import itertools

Edit = tuple[int, int, int]
"""(kind, position, value): overwrite, flip a bit, delete a run, insert a run, truncate."""


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given points (taken modulo its length), in order."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


def mutate(data: bytes, edits: list[Edit], *, max_delete: int, max_insert: int) -> bytes:
    """``data`` after ``edits``; deleted and inserted runs are at most the given lengths."""
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        position %= len(out)
        if kind == 0:
            out[position] = value
        elif kind == 1:
            out[position] ^= 1 << (value % 8)
        elif kind == 2:
            del out[position : position + 1 + value % max_delete]
        elif kind == 3:
            out[position:position] = bytes([value]) * (1 + value % max_insert)
        else:
            del out[position:]
    return bytes(out)
