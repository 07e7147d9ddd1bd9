"""Book-keeping for one multiplexed stream: credit both ways, queued output, half-close flags."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class StreamState:
    stream_id: int
    send_window: int
    """Bytes the peer still lets us send."""
    recv_window: int
    """Bytes we still let the peer send."""
    unacked: int = 0
    """Bytes delivered to the application and not yet acknowledged."""
    pending_grant: int = 0
    """Acknowledged bytes not yet returned to the peer as a WINDOW frame."""
    queue: bytearray = field(default_factory=bytearray)
    """Application bytes waiting for credit or for their turn."""
    end_requested: bool = False
    end_sent: bool = False
    remote_ended: bool = False
    scheduled: bool = False
    """True while the stream sits in the round-robin queue."""

    def sendable(self, peer_ready: bool) -> bool:
        """Has a frame to go out now: data within credit, or the END after the last data."""
        if self.end_sent:
            return False
        if self.queue:
            return peer_ready and self.send_window > 0
        return self.end_requested

    def finished(self) -> bool:
        return self.end_sent and self.remote_ended
