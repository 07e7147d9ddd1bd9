"""The namespace VM's veth link carries 64 KiB frames both ways, as loopback does."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from proxy.netns_entry import call_in_netns
from tests.integration.vm_helpers import bare_namespace
from vm.backends.netns_setup import LINK_MTU

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")

DATAGRAM = 60_000  # more than any 1500-byte link carries unfragmented
# Linux's <linux/in.h> values; Python's socket module names them only from 3.12
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
IP_MTU = 14


def unfragmented_udp(bind: str) -> socket.socket:
    """A UDP socket bound to ``bind`` that may not fragment (DF set, EMSGSIZE past the MTU)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    sock.bind((bind, 0))
    sock.settimeout(5)
    return sock


def test_the_link_takes_a_60000_byte_datagram_unfragmented_both_ways(tmp_path: Path) -> None:
    with bare_namespace(tmp_path / "vm") as vm:
        addresses = vm.addresses()
        host = unfragmented_udp(addresses["host_ip"])
        netns = f"/run/netns/{vm.name}"
        inside = call_in_netns(netns, lambda: unfragmented_udp(addresses["vm_ip"]))
        try:
            host.connect(inside.getsockname())
            inside.connect(host.getsockname())
            payload = os.urandom(DATAGRAM)
            host.send(payload)
            assert inside.recv(DATAGRAM + 1) == payload
            inside.send(payload[::-1])
            assert host.recv(DATAGRAM + 1) == payload[::-1]
            for sock in (host, inside):  # a connected socket's IP_MTU is its route's
                assert sock.getsockopt(socket.IPPROTO_IP, IP_MTU) == LINK_MTU
        finally:
            host.close()
            inside.close()
