"""The benchmark runner behind ``python -m tests.bench`` (``make bench``).

Imports every ``tests/bench/bench_*.py``, calls its ``run()`` and prints one table of all
figures. ``BENCH_ONLY=substring`` keeps the modules whose name contains it (only that one
when it is a whole module name, e.g. ``bench_relay``); ``BENCH_JSON=FILE`` also writes the
figures as a JSON list; ``BENCH_SMOKE=1`` measures each figure once, briefly
(:mod:`tests.bench.smoke_mode`). A module that raises becomes an error row and makes the exit
status 1; the other modules still run.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tests.bench.figures import JSON_KEYS, error_row

BENCH_DIR = Path(__file__).resolve().parent


def module_names(directory: Path, only: str) -> list[str]:
    """The ``bench_*`` modules in ``directory`` whose name contains ``only``; just the one
    when ``only`` is a whole module name."""
    names = sorted(path.stem for path in directory.glob("bench_*.py"))
    if only in names:
        return [only]
    return [name for name in names if only in name]


def run_module(package: str, name: str) -> tuple[list[dict[str, Any]], bool]:
    """The module's figures, and whether it ran without error. A module whose ``run`` is a
    generator keeps the figures it gave before an error (minutes of measuring are not thrown
    away by a failure in the teardown); the error follows them as a row of its own."""
    started = time.monotonic()
    print(f"bench: {name} ... (load average {load()})", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    try:
        module = importlib.import_module(f"{package}.{name}")
        for row in module.run():
            missing = [key for key in JSON_KEYS if key not in row]
            if missing:
                raise ValueError(f"figure {row.get('name')!r} lacks {', '.join(missing)}")
            rows.append(row)
    except Exception as exc:
        traceback.print_exc()
        print(f"bench: {name} failed after {time.monotonic() - started:.1f} s", file=sys.stderr)
        return [*rows, error_row(name, f"{type(exc).__name__}: {exc}")], False
    took = time.monotonic() - started
    print(f"bench: {name} done in {took:.1f} s (load average {load()})", file=sys.stderr)
    return rows, True


def load() -> str:
    """The 1-minute load average against the cores: figures taken on a busy machine vary."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value else "0"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("name", "value", "unit", "baseline", "baseline value", "ratio", "target", "met")
    lines = [header]
    for row in rows:
        met = row.get("met")
        lines.append(
            (
                str(row["name"]),
                number(row["value"]),
                str(row["unit"]),
                str(row["baseline"]),
                number(row["baseline_value"]),
                "-" if row["ratio"] is None else f"{row['ratio']:.2f}",
                str(row.get("target", "")),
                "" if met is None else ("yes" if met else "NO"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {1, 4, 5}
    out = []
    for index, line in enumerate(lines):
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def main(package: str = "tests.bench", directory: Path = BENCH_DIR) -> int:
    """Run the ``bench_*`` modules of ``package`` (found in ``directory``); the exit status."""
    only = os.environ.get("BENCH_ONLY", "")
    names = module_names(directory, only)
    if not names:
        print(f"bench: no module matches BENCH_ONLY={only!r}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    ok = True
    for name in names:
        module_rows, module_ok = run_module(package, name)
        rows.extend(module_rows)
        ok = ok and module_ok
    sys.stderr.flush()
    print(format_table(rows), flush=True)
    json_path = os.environ.get("BENCH_JSON")
    if json_path:
        figures = [{key: row[key] for key in JSON_KEYS} for row in rows]
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1
