"""Figures the reliability tests measure (recovery times, load held, fuzz counts).

A test calls :func:`record`; when ``HOSTNET_RELIABILITY_FIGURES`` names a file (set by
``python -m tests.reliability``) each figure is appended to it as one JSON line, and the
runner prints them as a table. Outside that run, recording costs nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIGURES_ENV = "HOSTNET_RELIABILITY_FIGURES"
RECOVERY_LIMIT = 2.0  # seconds: every fault must be recovered from within this


def record(section: str, name: str, value: float, unit: str, note: str = "") -> None:
    """One figure for the report; ``section`` is fault, load, fuzz, bad input or security."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    line = {"section": section, "name": name, "value": value, "unit": unit, "note": note}
    with Path(target).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def read_figures(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def time_until(condition: Callable[[], bool], start: float, timeout: float, what: str) -> float:
    """Seconds from ``start`` (a ``time.monotonic()`` value) until ``condition()`` holds."""
    deadline = start + timeout
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"no recovery: {what} did not happen within {timeout} s")
        time.sleep(0.01)
