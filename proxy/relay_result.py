"""How a relayed connection ended."""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    CLOSED = "closed"
    """Both directions ended with FIN."""
    RESET_BY_SOURCE = "reset-by-source"
    """A side reset while we read from it; the other side was reset too."""
    RESET_BY_DEST = "reset-by-dest"
    """A side reset while we wrote to it; the other side was reset too."""
    ERROR = "error"
    CANCELLED = "cancelled"
