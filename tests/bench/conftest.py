"""A throwaway package of small benchmark modules, for the runner's and the smoke's tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DEMO_PACKAGE = "demo_bench"


@pytest.fixture
def bench_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, str]], Path]]:
    """Makes ``demo_bench`` (importable) from {module name: source}; returns its folder.

    BENCH_ONLY, BENCH_JSON and BENCH_SMOKE are cleared so the caller sets what it tests.
    """
    package = tmp_path / DEMO_PACKAGE
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("BENCH_ONLY", "BENCH_JSON", "BENCH_SMOKE"):
        monkeypatch.delenv(name, raising=False)

    def make(modules: dict[str, str]) -> Path:
        package.mkdir()
        (package / "__init__.py").write_text("")
        for name, source in modules.items():
            (package / f"{name}.py").write_text(source)
        return package

    yield make
    for name in [name for name in sys.modules if name.startswith(DEMO_PACKAGE)]:
        del sys.modules[name]
