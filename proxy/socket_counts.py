"""A cheap probe of "did any TCP or UDP socket get hashed or unhashed?": /proc/net/sockstat.

The kernel has no event for listen(), so discovery polls. A full sock_diag dump of 1,000
listeners costs ~0.5 ms of CPU; reading the per-namespace ``inuse`` counters costs ~3 us.
``TCP: inuse`` goes up on listen() and down when a listener closes, ``UDP: inuse`` on bind()
and close (and likewise ``TCP6``/``UDP6`` in sockstat6), so polling the counters often and
dumping only when they move finds a new listener within one probe period. The counters also
move for connections and can cancel out (a listener opens while a connection closes), and a
bound UDP socket that connects leaves the listener set without moving them: callers still
dump on a slower fixed period as a safety net.

The files are opened once; like the netlink socket, they stay bound to the network namespace
the process was in when it opened them.
"""

from __future__ import annotations

import os
from typing import Final

_FILES: Final = ("/proc/net/sockstat", "/proc/net/sockstat6")
_KEYS: Final = (b"TCP:", b"UDP:", b"TCP6:", b"UDP6:")


class SocketCounts:
    """Reads the per-namespace figures of /proc/net/sockstat and sockstat6.

    Only figures the kernel keeps per network namespace are read: sockets used, TCP sockets in
    TIME_WAIT, and ``inuse`` of TCP, UDP, TCP6 and UDP6. The others on those lines (orphan,
    alloc, mem) are machine-wide and move with every other namespace's traffic.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        for path in _FILES:
            try:
                self._fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            except FileNotFoundError:
                continue  # no IPv6 in this kernel: sockstat6 is absent

    def read(self) -> tuple[bytes, ...]:
        """(used, tw, TCP inuse, UDP inuse[, TCP6 inuse, UDP6 inuse]) as raw digits.

        Only meant to be compared: ``inuse(read())`` moves when a listener comes or goes;
        the whole tuple staying the same means the namespace saw no socket activity, short
        of events cancelling out exactly.
        """
        used = tw = b""
        values: list[bytes] = []
        for fd in self._fds:
            for line in os.pread(fd, 4096, 0).split(b"\n"):
                fields = line.split(b" ")
                if fields[0] in _KEYS and len(fields) > 2:
                    values.append(fields[2])
                    if fields[0] == b"TCP:" and len(fields) > 6:
                        tw = fields[6]
                elif fields[0] == b"sockets:" and len(fields) > 2:
                    used = fields[2]
        return (used, tw, *values)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def inuse(counts: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The ``inuse`` figures of a ``SocketCounts.read()`` tuple."""
    return counts[2:]
