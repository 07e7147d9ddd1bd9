"""One benchmark figure: a value next to the baseline it was measured against in the same run."""

from __future__ import annotations

from typing import Any

from tests.bench.smoke_mode import SMOKE

JSON_KEYS = ("name", "value", "unit", "baseline", "baseline_value", "ratio")
"""The keys ``BENCH_JSON`` writes per figure (the contract in DESIGN.md)."""


def figure(
    name: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    *,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """A figure; ``ratio`` is value / baseline_value (None when the baseline is 0).

    ``target`` (e.g. ">= 0.85 x direct") and ``met`` are shown in the printed table only,
    and not in smoke mode, where a figure is too brief to judge.
    """
    ratio = value / baseline_value if baseline_value else None
    result: dict[str, Any] = {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
    }
    if target is not None and not SMOKE:
        result["target"] = target
        result["met"] = met
    return result


def error_row(module: str, message: str) -> dict[str, Any]:
    """The row a benchmark module that failed leaves in the table."""
    return {
        "name": f"{module}: ERROR",
        "value": None,
        "unit": "",
        "baseline": message,
        "baseline_value": None,
        "ratio": None,
        "error": True,
    }
