"""UDP loss at a fixed datagram rate, through any route, with a sink that outlives the runs.

``python -m tests.bench.udp_loss sink --host H --port P`` binds H:P (before any run, so a
mirror of it is in place first), prints ``ready``, and for each line on stdin prints how many
datagrams arrived since the last line. ``python -m tests.bench.udp_loss send --host H --port P
--rate R --seconds S`` sends R datagrams/s of 64 bytes, paced each millisecond, and prints how
many it sent.
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time

SIZE = 64
TICK = 0.001


def sink(host: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((host, port))
    sock.setblocking(False)
    print("ready", flush=True)
    received = 0
    while True:
        ready, _, _ = select.select([sock, sys.stdin], [], [])
        if sock in ready:
            while True:
                try:
                    sock.recv(65536)
                except BlockingIOError:
                    break
                received += 1
        if sys.stdin in ready:
            if not sys.stdin.readline():
                return
            time.sleep(0.2)  # datagrams still in flight through a relay
            while True:
                try:
                    sock.recv(65536)
                except BlockingIOError:
                    break
                received += 1
            print(received, flush=True)
            received = 0


def send(host: str, port: int, rate: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    payload = b"u" * SIZE
    sent = 0
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds:
        due = int((now - started) * rate)
        while sent < due:
            try:
                sock.send(payload)
            except (ConnectionRefusedError, BlockingIOError):
                pass  # counted as sent: it did not arrive
            sent += 1
        time.sleep(TICK)
    print(sent, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.udp_loss")
    parser.add_argument("role", choices=["sink", "send"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if args.role == "sink":
        sink(args.host, args.port)
    else:
        send(args.host, args.port, args.rate, args.seconds)


if __name__ == "__main__":
    main()
