"""The benchmark smoke: every ``tests/bench/bench_*.py`` runs once in smoke mode, in ``make test``.

Each module runs in its own ``python -m tests.bench`` with ``BENCH_SMOKE=1`` (each figure
measured once, briefly; no target judged), ``BENCH_ONLY`` set to it and ``BENCH_JSON`` set,
so a benchmark that stops running fails CI. Its test fails when the module raises, when it
writes no figures, when a figure breaks the ``BENCH_JSON`` contract (:mod:`tests.bench.contract`:
a missing key, value or baseline, a wrong ratio) or when the table lacks a figure. Modules
are found by name, so a new one is covered without an edit here; what it must provide is
written in :mod:`tests.bench`.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bench.contract import contract_problems
from tests.bench.runner import BENCH_DIR, main, module_names
from tests.bench.tools import REPO

TIMEOUT = 110.0
"""Seconds one module's smoke may take: a few on a quiet machine, many on a loaded one."""
VM_TIMEOUT = 400.0
"""The same for a module that boots a QEMU VM: TCG boots slowly on a loaded machine."""


@dataclass
class SmokeRun:
    """What one smoke run of a benchmark module left behind."""

    module: str
    returncode: int
    table: str  # stdout: the printed table
    log: str  # stderr: the runner's progress and any traceback
    figures: Any  # the BENCH_JSON document, or None when none was written


def run_smoke(module: str, json_path: Path, timeout: float) -> SmokeRun:
    env = {**os.environ, "BENCH_SMOKE": "1", "BENCH_ONLY": module, "BENCH_JSON": str(json_path)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    figures = json.loads(json_path.read_text()) if json_path.exists() else None
    return SmokeRun(module, done.returncode, done.stdout, done.stderr, figures)


def smoke_problems(run: SmokeRun) -> list[str]:
    """Why the run does not count as a working benchmark; empty when it does."""
    problems = []
    if run.returncode != 0:
        problems.append(f"python -m tests.bench exited with {run.returncode}")
    if run.figures is None:
        return [*problems, "it wrote no BENCH_JSON file"]
    problems += contract_problems(run.figures)
    if isinstance(run.figures, list):
        for item in run.figures:
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name not in run.table:
                problems.append(f"the printed table lacks figure {name!r}")
    return problems


def smoke_marks(module: str) -> list[pytest.MarkDecorator]:
    """The module's ``SMOKE_MARKS`` as pytest marks ("root" skips unless root; "vm" gives
    the VM timeout). A module that does not import gets none: its smoke run then fails."""
    try:
        names = tuple(getattr(importlib.import_module(f"tests.bench.{module}"), "SMOKE_MARKS", ()))
    except Exception:  # reported by the smoke run itself, with its traceback
        names = ()
    marks = [getattr(pytest.mark, name) for name in names]
    if "root" in names and os.geteuid() != 0:
        marks.append(pytest.mark.skip(reason=f"{module} needs root"))
    if "vm" in names:
        marks.append(pytest.mark.timeout(VM_TIMEOUT + 20))
    return marks


@pytest.mark.parametrize(
    "module",
    [pytest.param(name, marks=smoke_marks(name)) for name in module_names(BENCH_DIR, "")],
)
def test_benchmark_module_runs_in_smoke_mode(
    module: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    timeout = VM_TIMEOUT if request.node.get_closest_marker("vm") else TIMEOUT
    run = run_smoke(module, tmp_path / "figures.json", timeout)
    problems = smoke_problems(run)
    assert not problems, (
        f"{module} in smoke mode: " + "; ".join(problems) + f"\n--- stderr (end) ---\n"
        f"{run.log[-4000:]}\n--- table ---\n{run.table[-4000:]}"
    )


# --- the smoke's own checks, on small real modules that break in each way --------------

GOOD = """
from tests.bench.figures import figure

def run():
    return [figure("demo/fast", 30.0, "ops/s", "demo/slow", 10.0)]
"""
BROKEN = {
    "raises": (
        'def run():\n    raise RuntimeError("the server did not start")\n',
        "python -m tests.bench exited with 1",
    ),
    "no-figures": ("def run():\n    return []\n", "there are no figures"),
    "no-baseline-value": (
        """
from tests.bench.figures import figure

def run():
    return [figure("demo/fast", 30.0, "ops/s", "demo/slow", None)]
""",
        "baseline_value is None, not a measured number",
    ),
    "wrong-ratio": (
        """
def run():
    return [{"name": "demo/fast", "value": 30.0, "unit": "ops/s", "baseline": "demo/slow",
             "baseline_value": 10.0, "ratio": 0.5}]
""",
        "ratio 0.5 is not 30.0 / 10.0",
    ),
}
"""Module sources that break in one way each, and the problem the smoke must name."""


def smoke_in_process(
    bench_package: Callable[[dict[str, str]], Path],
    source: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> SmokeRun:
    """``run_smoke``'s result for one module of ``source``, run by the runner in this process
    (the package is not tests.bench, so it cannot run as ``python -m tests.bench``)."""
    package = bench_package({"bench_demo": source})
    json_path = package / "figures.json"
    monkeypatch.setenv("BENCH_JSON", str(json_path))
    returncode = main("demo_bench", package)
    out, err = capsys.readouterr()
    figures = json.loads(json_path.read_text()) if json_path.exists() else None
    return SmokeRun("bench_demo", returncode, out, err, figures)


def test_a_working_module_passes_the_smoke_checks(
    bench_package: Callable[[dict[str, str]], Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = smoke_in_process(bench_package, GOOD, monkeypatch, capsys)
    assert smoke_problems(run) == []


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_a_broken_module_fails_the_smoke_checks(
    breakage: str,
    bench_package: Callable[[dict[str, str]], Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, problem = BROKEN[breakage]
    run = smoke_in_process(bench_package, source, monkeypatch, capsys)
    problems = smoke_problems(run)
    assert any(problem in found for found in problems), problems


def test_a_run_that_wrote_no_figures_fails_the_smoke_checks() -> None:
    run = SmokeRun("bench_demo", 0, "", "", None)
    assert smoke_problems(run) == ["it wrote no BENCH_JSON file"]


def test_a_figure_missing_from_the_table_fails_the_smoke_checks() -> None:
    figure = {"name": "demo/fast", "value": 3.0, "unit": "x", "baseline": "demo/slow"}
    figure |= {"baseline_value": 1.0, "ratio": 3.0}
    run = SmokeRun("bench_demo", 0, "another table", "", [figure])
    assert smoke_problems(run) == ["the printed table lacks figure 'demo/fast'"]
