"""Running a module's hypothesis properties at the CI size or at the opt-in fuzzing size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings


def run_property(prop: Callable[..., Any], examples: int, *, long: bool = False) -> None:
    """Run ``prop`` (already wrapped by ``given``) for ``examples`` inputs, without deadline.

    A long run keeps nothing in hypothesis's example database: it is a sweep, not a record.
    """
    options: dict[str, Any] = {"database": None} if long else {}
    settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), **options
    )(prop)()
