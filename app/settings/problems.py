"""What is wrong in a settings file, said so a person can fix it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One problem: the key (None for the whole file), what is wrong, and how to fix it."""

    key: str | None
    message: str
    fix: str
    file: Path | None = None

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        what = f"{self.key}: " if self.key else ""
        return f"{where}{what}{self.message} {self.fix}".strip()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Problem:
        file = data.get("file")
        return cls(
            data.get("key"), str(data["message"]), str(data["fix"]), Path(file) if file else None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "message": self.message,
            "fix": self.fix,
            "file": str(self.file) if self.file else None,
        }
