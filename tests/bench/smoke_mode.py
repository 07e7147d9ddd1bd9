"""Smoke mode: with ``BENCH_SMOKE=1`` every benchmark measures each figure once, briefly.

``make test`` runs every benchmark module this way (:mod:`tests.bench.test_smoke`), so a
benchmark that stops running fails CI. A smoke figure is only a sign of life: it is taken
from a fraction of a second and judges no target.
"""

from __future__ import annotations

import os
from typing import TypeVar

SMOKE = os.environ.get("BENCH_SMOKE", "") == "1"

T = TypeVar("T")


def full_or_smoke(full: T, smoke: T) -> T:
    """``full`` for ``make bench``, ``smoke`` under ``BENCH_SMOKE=1``: a duration, a count of
    rounds or trials."""
    return smoke if SMOKE else full
