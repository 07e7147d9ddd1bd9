"""Whether to hold at all: on unless ``HOSTNET_HOLD=off`` (benchmarks measure without it)."""

from __future__ import annotations

import os


def hold_wanted() -> bool:
    return os.environ.get("HOSTNET_HOLD", "on").strip().lower() not in ("off", "0", "false", "no")
