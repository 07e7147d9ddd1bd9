"""The UDP listener's receive buffer: past net.core.rmem_max as root (SO_RCVBUFFORCE); capped,
and said once with the sysctl that lifts it, for a process without CAP_NET_ADMIN."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.addresses import Endpoint
from proxy.receive_buffer import RMEM_MAX, effective_receive_buffer, enlarge_receive_buffer
from proxy.udp_forwarder import LISTENER_RECEIVE_BUFFER, UdpForwarder

ROOT = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN")


def rmem_max() -> int:
    return int(RMEM_MAX.read_text())


@needs_root
def test_root_gets_the_size_it_asks_past_rmem_max() -> None:
    """Twice the machine's cap, so the kernel's silent clamp would show whatever it is set to."""
    asked = 2 * rmem_max()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert enlarge_receive_buffer(sock, asked) == asked
        assert effective_receive_buffer(sock) == asked


@needs_root
async def test_the_udp_listener_gets_its_four_mebibytes() -> None:
    forwarder = UdpForwarder(Endpoint("127.0.0.1", 0), target=Endpoint("127.0.0.1", 9))
    await forwarder.start()
    try:
        assert forwarder._sock is not None
        assert effective_receive_buffer(forwarder._sock) == LISTENER_RECEIVE_BUFFER
    finally:
        await forwarder.stop()


CAPPED = r"""
import logging, socket, sys
from proxy.receive_buffer import enlarge_receive_buffer
logging.basicConfig(level=logging.WARNING, format="%(message)s")
asked = int(sys.argv[1])
for _ in range(3):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        print(enlarge_receive_buffer(sock, asked), flush=True)
"""


@needs_root
def test_without_cap_net_admin_the_cap_is_logged_once_with_the_sysctl() -> None:
    """A real process without CAP_NET_ADMIN (dropped from its bounding set by setpriv)."""
    cap = rmem_max()
    done = subprocess.run(
        [
            "setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
            sys.executable, "-c", CAPPED, str(2 * cap),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )  # fmt: skip
    assert done.stdout.split() == [str(cap)] * 3
    warnings = [line for line in done.stderr.splitlines() if "net.core.rmem_max" in line]
    assert len(warnings) == 1, done.stderr
    assert f"sysctl -w net.core.rmem_max={2 * cap}" in warnings[0]
