"""Per-forward counters, read by the daemon's control API and by tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ForwardCounters:
    """What one forward has carried. ``bytes_in`` flows client -> target, ``bytes_out`` back."""

    connections_open: int = 0
    connections_total: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    udp_flows_open: int = 0
    udp_flows_total: int = 0
    udp_flows_evicted: int = 0
    udp_datagrams_in: int = 0
    udp_datagrams_out: int = 0
    errors: int = 0
    last_error: str = ""

    def note_error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)
