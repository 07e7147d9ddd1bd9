"""A large socket receive buffer, past net.core.rmem_max where the process may go there.

SO_RCVBUF is silently capped at net.core.rmem_max (208 KiB on many distributions).
SO_RCVBUFFORCE ignores the cap but needs CAP_NET_ADMIN: root gets the size it asks for; any
other process gets what the cap allows, and the log says so once, with the sysctl that
lifts it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path

log = logging.getLogger("hostnet.proxy")

RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux's number, for older Pythons

_cap_logged = False


def effective_receive_buffer(sock: socket.socket) -> int:
    """The bytes of payload ``sock`` may queue: the kernel reports twice what was set (it
    doubles the request to allow for its own bookkeeping), so this halves it back."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2


def enlarge_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer on ``sock``; the size it got."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:  # EPERM without CAP_NET_ADMIN; ENOPROTOOPT off Linux
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    got = effective_receive_buffer(sock)
    if got < size:
        _log_cap_once(size, got)
    return got


def _log_cap_once(size: int, got: int) -> None:
    global _cap_logged
    if _cap_logged:
        return
    _cap_logged = True
    cap = "net.core.rmem_max"
    with contextlib.suppress(OSError, ValueError):
        cap = f"net.core.rmem_max ({int(RMEM_MAX.read_text()):,} bytes)"
    log.warning(
        "UDP receive buffers are capped at %s bytes by %s, not the %s asked for: bursts may "
        "drop datagrams. Lift it with `sysctl -w net.core.rmem_max=%d`, or run as root.",
        f"{got:,}",
        cap,
        f"{size:,}",
        size,
    )
