"""The benchmark runner on small real benchmark modules: table, JSON, BENCH_ONLY, failures."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench.runner import main

GOOD = """
from tests.bench.figures import figure

def run():
    return [figure("demo/fast", 30.0, "ops/s", "demo/slow", 10.0, target=">= 2 x", met=True)]
"""
FAILING = """
def run():
    raise RuntimeError("the server did not start")
"""


@pytest.fixture
def bench_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    package = tmp_path / "demo_bench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bench_a_good.py").write_text(GOOD)
    (package / "bench_b_failing.py").write_text(FAILING)
    (package / "helpers.py").write_text("raise AssertionError('not a benchmark module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BENCH_ONLY", raising=False)
    monkeypatch.delenv("BENCH_JSON", raising=False)
    yield package
    for name in [name for name in sys.modules if name.startswith("demo_bench")]:
        del sys.modules[name]


def test_a_failing_module_is_an_error_row_and_the_others_still_count(
    bench_package: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = bench_package / "figures.json"
    monkeypatch.setenv("BENCH_JSON", str(out_file))
    assert main("demo_bench", bench_package) == 1
    table = capsys.readouterr().out
    assert "demo/fast" in table and "3.00" in table and ">= 2 x" in table
    assert "bench_b_failing: ERROR" in table and "the server did not start" in table
    figures = json.loads(out_file.read_text())
    assert figures[0] == {
        "name": "demo/fast",
        "value": 30.0,
        "unit": "ops/s",
        "baseline": "demo/slow",
        "baseline_value": 10.0,
        "ratio": 3.0,
    }
    assert figures[1]["name"] == "bench_b_failing: ERROR" and figures[1]["value"] is None
    assert len(figures) == 2


def test_bench_only_selects_modules(
    bench_package: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BENCH_ONLY", "good")
    assert main("demo_bench", bench_package) == 0
    assert "ERROR" not in capsys.readouterr().out
    monkeypatch.setenv("BENCH_ONLY", "nothing-matches")
    assert main("demo_bench", bench_package) == 2
