"""The wire protocol and the multiplexer fed mutated and random input by a plain loop
(tests/reliability/fuzz_scale.py): a short smoke run here, at least 1M inputs each in the
opt-in long run:

    .venv/bin/pytest -m fuzz_long tests/unit/test_fuzz_scale.py     # HOSTNET_FUZZ_RUNS, 1M
"""

from __future__ import annotations

import os

import pytest

from tests.reliability.figures import record
from tests.reliability.fuzz_scale import TARGETS, describe, fuzz_parallel

SMOKE_INPUTS = 20_000
LONG_INPUTS = int(os.environ.get("HOSTNET_FUZZ_RUNS", "1000000"))
SEED = int(os.environ.get("HOSTNET_FUZZ_SEED", "20240"))


@pytest.mark.parametrize("target", list(TARGETS))
def test_fuzz_smoke(target: str) -> None:
    stats = TARGETS[target](SMOKE_INPUTS, SEED)
    assert stats.inputs == SMOKE_INPUTS
    # the inputs reach past the framing: refusals of several kinds, and inputs that pass
    assert stats.errors < stats.inputs
    assert len([o for o in stats.outcomes if "error" in o]) >= 4, stats.outcomes
    assert any("READY" in o or "OPEN" in o for o in stats.outcomes), stats.outcomes


@pytest.mark.fuzz_long
@pytest.mark.timeout(0)
@pytest.mark.parametrize("target", list(TARGETS))
def test_fuzz_at_scale(target: str) -> None:
    stats = fuzz_parallel(target, LONG_INPUTS, SEED)
    assert stats.inputs == LONG_INPUTS
    record(
        "fuzz", f"{stats.target} inputs, no crash or hang", stats.inputs, "inputs", describe(stats)
    )
