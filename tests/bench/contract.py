"""The ``BENCH_JSON`` contract (DESIGN.md), checked: what a file of figures must hold.

A list of one object per figure with exactly ``name``, ``value``, ``unit``, ``baseline``,
``baseline_value`` and ``ratio``; every figure has a measured value and a baseline measured in
the same run, and ``ratio`` is value / baseline_value (null when the baseline is 0).
"""

from __future__ import annotations

import math
from typing import Any

from tests.bench.figures import JSON_KEYS

RATIO_TOLERANCE = 1e-9


def is_number(value: object) -> bool:
    """A finite int or float (JSON has no NaN or infinity, and a bool is not a measure)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def figure_problems(item: object) -> list[str]:
    """What is wrong with one figure object; empty when it keeps the contract."""
    if not isinstance(item, dict):
        return [f"a figure is a {type(item).__name__}, not an object"]
    label = repr(item.get("name", "<no name>"))
    problems = []
    missing = [key for key in JSON_KEYS if key not in item]
    extra = sorted(set(item) - set(JSON_KEYS))
    if missing:
        problems.append(f"figure {label} lacks {', '.join(missing)}")
    if extra:
        problems.append(f"figure {label} has keys outside the contract: {', '.join(extra)}")
    if missing:
        return problems
    for key in ("name", "unit", "baseline"):
        if not is_text(item[key]):
            problems.append(f"figure {label}: {key} is {item[key]!r}, not a non-empty string")
    if item["baseline"] == item["name"]:
        problems.append(f"figure {label} is its own baseline")
    value, base, ratio = item["value"], item["baseline_value"], item["ratio"]
    for key, number in (("value", value), ("baseline_value", base)):
        if not is_number(number):
            problems.append(f"figure {label}: {key} is {number!r}, not a measured number")
    if is_number(value) and is_number(base):
        if base == 0:
            if ratio is not None:
                problems.append(f"figure {label}: ratio is {ratio!r} against a 0 baseline")
        elif not is_number(ratio) or not math.isclose(ratio, value / base, rel_tol=RATIO_TOLERANCE):
            problems.append(f"figure {label}: ratio {ratio!r} is not {value!r} / {base!r}")
    return problems


def contract_problems(figures: Any) -> list[str]:
    """What is wrong with a whole ``BENCH_JSON`` document; empty when it keeps the contract."""
    if not isinstance(figures, list):
        return [f"the figures are a {type(figures).__name__}, not a list"]
    if not figures:
        return ["there are no figures"]
    problems = [problem for item in figures for problem in figure_problems(item)]
    seen: set[tuple[object, object]] = set()
    for item in figures:
        if isinstance(item, dict):
            pair = (item.get("name"), item.get("baseline"))
            if pair in seen:
                problems.append(f"figure {pair[0]!r} against {pair[1]!r} appears twice")
            seen.add(pair)
    return problems
