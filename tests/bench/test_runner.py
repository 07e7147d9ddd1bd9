"""The benchmark runner on small real benchmark modules: table, JSON, BENCH_ONLY, failures."""

from __future__ import annotations

import json
from collections.abc import Callable
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
def demo(bench_package: Callable[[dict[str, str]], Path]) -> Path:
    return bench_package(
        {
            "bench_a_good": GOOD,
            "bench_b_failing": FAILING,
            "helpers": "raise AssertionError('not a benchmark module')\n",
        }
    )


def test_a_failing_module_is_an_error_row_and_the_others_still_count(
    demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = demo / "figures.json"
    monkeypatch.setenv("BENCH_JSON", str(out_file))
    assert main("demo_bench", demo) == 1
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
    demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BENCH_ONLY", "good")
    assert main("demo_bench", demo) == 0
    assert "ERROR" not in capsys.readouterr().out
    monkeypatch.setenv("BENCH_ONLY", "nothing-matches")
    assert main("demo_bench", demo) == 2


def test_bench_only_with_a_whole_module_name_selects_just_that_module(
    bench_package: Callable[[dict[str, str]], Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo = bench_package({"bench_relay": GOOD, "bench_relay_kernel": FAILING})
    monkeypatch.setenv("BENCH_ONLY", "bench_relay")
    assert main("demo_bench", demo) == 0
    assert "demo/fast" in capsys.readouterr().out
    monkeypatch.setenv("BENCH_ONLY", "relay")
    assert main("demo_bench", demo) == 1
