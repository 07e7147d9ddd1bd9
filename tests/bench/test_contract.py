"""The BENCH_JSON contract check: a figure from figure() keeps it; each way to break it is named."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench.contract import contract_problems
from tests.bench.figures import error_row, figure


def good() -> dict[str, Any]:
    return figure("demo/fast", 30.0, "ops/s", "demo/slow", 10.0)


def test_figures_made_by_figure_keep_the_contract() -> None:
    zero_baseline = figure("demo/timeouts", 0, "trials", "demo/direct-timeouts", 0)
    assert contract_problems([good(), zero_baseline]) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"baseline_value": None}, "baseline_value is None, not a measured number"),
        ({"value": float("nan")}, "value is nan, not a measured number"),
        ({"value": True}, "value is True, not a measured number"),
        ({"ratio": 2.0}, "ratio 2.0 is not 30.0 / 10.0"),
        ({"baseline_value": 0, "ratio": 0.0}, "ratio is 0.0 against a 0 baseline"),
        ({"unit": ""}, "unit is '', not a non-empty string"),
        ({"baseline": "demo/fast"}, "is its own baseline"),
        ({"target": ">= 2 x"}, "has keys outside the contract: target"),
    ],
)
def test_each_broken_field_is_named(change: dict[str, Any], problem: str) -> None:
    problems = contract_problems([good() | change])
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_missing_key_is_named() -> None:
    figure = good()
    del figure["baseline_value"]
    assert contract_problems([figure]) == ["figure 'demo/fast' lacks baseline_value"]


def test_the_document_must_be_a_non_empty_list_without_repeats() -> None:
    assert contract_problems({"figures": []}) == ["the figures are a dict, not a list"]
    assert contract_problems([]) == ["there are no figures"]
    assert contract_problems(["demo/fast"]) == ["a figure is a str, not an object"]
    assert contract_problems([good(), good()]) == [
        "figure 'demo/fast' against 'demo/slow' appears twice"
    ]


def test_an_error_row_breaks_the_contract() -> None:
    assert contract_problems([error_row("bench_demo", "it raised")]) != []
