"""Excluded ports: numbers and "LOW-HIGH" ranges, as settings hold them."""

from __future__ import annotations

from collections.abc import Iterable


def port_range_error(item: object) -> str | None:
    """Why ITEM is not a port or a port range, or None."""
    if isinstance(item, bool):
        return f"{item!r} is not a port"
    if isinstance(item, int):
        return None if 1 <= item <= 65535 else f"port {item} is outside 1-65535"
    if not isinstance(item, str):
        return f"{item!r} is not a port"
    low_text, _, high_text = item.partition("-")
    if not low_text.isdigit() or (high_text and not high_text.isdigit()):
        return f'{item!r} is not a port or a range like "8000-8010"'
    low = int(low_text)
    high = int(high_text) if high_text else low
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        return f"{item!r} is outside 1-65535"
    if low > high:
        return f'{item!r} runs backwards; write it as "{high}-{low}"'
    return None


def port_ranges(items: Iterable[int | str]) -> tuple[tuple[int, int], ...]:
    """Inclusive (low, high) ranges from a valid HostNetworkingExcludedPorts value."""
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, int):
            out.append((item, item))
        else:
            low, _, high = item.partition("-")
            out.append((int(low), int(high or low)))
    return tuple(sorted(out))


def is_excluded(port: int, ranges: Iterable[tuple[int, int]]) -> bool:
    return any(low <= port <= high for low, high in ranges)
