"""One engine for all the engine tests: starting dockerd costs seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.engine_fixture import EngineSession, engine_session


@pytest.fixture(scope="session")
def engine() -> Iterator[EngineSession]:
    yield from engine_session()
