"""A sans-I/O parser for Server-Sent Events: feed it lines, get (event, data) pairs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SseParser:
    """Collects ``event:`` and ``data:`` fields until a blank line ends the event."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed_line(self, line: str) -> tuple[str, str] | None:
        """One line without its end-of-line; returns (event, data) when an event completes."""
        if line == "":
            if not self._data and not self._event:
                return None
            done = (self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return done
        if line.startswith(":"):
            return None  # a comment, such as the daemon's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None
