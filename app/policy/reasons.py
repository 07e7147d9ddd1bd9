"""What the gate's answers are made of: a setting as the gate sees it, and a reason to refuse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Source = Literal["default", "user", "admin-default", "admin-locked"]
SOURCES: Final[tuple[Source, ...]] = ("default", "user", "admin-default", "admin-locked")

ADMIN_FILE: Final = "admin-settings.json"


@dataclass(frozen=True)
class GateSetting:
    """One setting as the gate sees it."""

    value: object
    source: Source = "default"
    location: str | None = None  # the file it came from; None for a built-in default


@dataclass(frozen=True)
class Reason:
    """Why host networking is refused, and what to do about it."""

    setting: str
    source: Source | None
    location: str | None
    problem: str
    fix: str

    @property
    def message(self) -> str:
        return f"{self.problem} {self.fix}"

    def __str__(self) -> str:
        return self.message
