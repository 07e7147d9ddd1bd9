"""A listener that opens and closes on command, and a prober that waits for a port to change.

The full-path discovery benchmark runs one on each side of the VM boundary (the one in the
VM under ``ip netns exec``) and drives both through pipes, so each trial is timed from the
listen() or close() call itself to the moment the other side's connect() sees the change.
Both print ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every network namespace.

``listen --host H --port P`` prints ``ready``, then per stdin line: ``open`` binds and
listens (SO_REUSEADDR), ``close`` closes; each answers the time just before the call.
``open`` retries a bind that fails with EADDRINUSE every millisecond (for up to 5 s) and
answers ``TIME RETRIES``: a port the other side's agent briefly holds is a finding to count,
not a reason to stop.

``probe --host H --port P`` prints ``ready``, then per stdin line: ``up`` answers
``polling`` and connects every ``--interval`` until a connect succeeds; ``down`` does the
same until a connect is refused (ECONNREFUSED). Each then answers the time of that
connect's return, or ``timeout`` after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import errno
import socket
import struct
import sys
import time

LINGER_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: close() resets, so thousands of probes leave no TIME_WAIT behind."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def bound(family: socket.AddressFamily, host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound to ``host``:``port``, and how many binds failed with EADDRINUSE first."""
    retries = 0
    deadline = time.monotonic() + 5.0
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            retries += 1
            time.sleep(0.001)
            continue
        return sock, retries


def listen(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock: socket.socket | None = None
    say("ready")
    for command in sys.stdin:
        command = command.strip()
        if command == "open" and sock is None:
            sock, retries = bound(family, host, port)
            began = time.monotonic()
            sock.listen(128)
            say(f"{began!r} {retries}")
        elif command == "close" and sock is not None:
            began = time.monotonic()
            sock.close()
            sock = None
            say(repr(began))
        else:
            say(f"error: {command!r} in the wrong state")


def attempt(family: socket.AddressFamily, host: str, port: int) -> int:
    """0 when a connection was made, else the connect's errno."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((host, port))
        except OSError as exc:
            return exc.errno or errno.EIO
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        return 0


def probe(host: str, port: int, interval: float, timeout: float) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    say("ready")
    for command in sys.stdin:
        command = command.strip()
        if command not in ("up", "down"):
            say(f"error: unknown command {command!r}")
            continue
        want_up = command == "up"
        say("polling")
        deadline = time.monotonic() + timeout
        while True:
            result = attempt(family, host, port)
            now = time.monotonic()
            if (result == 0) if want_up else (result == errno.ECONNREFUSED):
                say(repr(now))
                break
            if now > deadline:
                say("timeout")
                break
            time.sleep(interval)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.vm_port_toggle")
    parser.add_argument("role", choices=("listen", "probe"))
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    if args.role == "listen":
        listen(args.host, args.port)
    else:
        probe(args.host, args.port, args.interval, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
