"""Is the guest still answering? The host pings it over the multiplexer.

A guest can hang while QEMU lives on (a kernel stuck, vCPUs paused): the chardev socket
stays open and nothing ends the session, so without a check the daemon would wait on it
forever. Once a session is ready, the host sends a PING every ``PING_INTERVAL``; any bytes
from the guest count as an answer (a PONG, or stream data). After ``MISSED_PINGS`` intervals
in a row without one, ``LIVENESS_TIMEOUT`` seconds, the session is closed and the link
reports the guest silent until a later session hears from it again.

Missed intervals are counted, not the time since the last answer, so a host that was itself
asleep (a suspended laptop) does not find its guest silent on waking.
"""

from __future__ import annotations

import asyncio

from vm.transport.mux_session import MuxSession

PING_INTERVAL = 3.0
MISSED_PINGS = 5
LIVENESS_TIMEOUT = PING_INTERVAL * MISSED_PINGS
"""15 s: far beyond an answer's time even from a busy guest under TCG (milliseconds)."""


class Liveness:
    """What one host link knows of the guest's answers."""

    def __init__(self, interval: float = PING_INTERVAL, missed: int = MISSED_PINGS) -> None:
        self.interval = interval
        self.missed = missed
        self.silent: str | None = None
        """Why the guest counts as hung, or None while it answers."""

    @property
    def timeout(self) -> float:
        return self.interval * self.missed

    async def watch(self, session: MuxSession) -> None:
        """Ping ``session`` until it ends; close it if the guest stops answering."""
        await session.peer_ready.wait()
        self.silent = None  # the guest answered this session: it runs
        misses = 0
        heard = session.bytes_heard
        while session.alive:
            session.ping()
            await asyncio.sleep(self.interval)
            if session.bytes_heard != heard:
                heard, misses = session.bytes_heard, 0
                continue
            misses += 1
            if misses >= self.missed:
                self.silent = (
                    f"the guest did not answer the host's pings for {self.timeout:g} s "
                    f"({misses} in a row, {self.interval:g} s apart) while QEMU still runs: "
                    "it hangs"
                )
                session.close(self.silent)
                return
