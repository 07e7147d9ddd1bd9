"""A UDP echo server in the VM on 0.0.0.0 and :: at one port that is free on both sides.

Why not ``free_port()`` (a port the host's kernel hands out) and then a bind in the VM: the
VM holds UDP ports the host cannot see. It mirrors every host UDP socket bound to loopback or
a wildcard, and a UDP client that sends without binding first (``sendto``) is one: the
kernel binds it to 0.0.0.0 and an ephemeral port. When the client closes, its port is free
on the host at once, but the VM keeps the mirror until discovery confirms the close and the
agent unbinds it: tens of ms on a quiet machine, seconds on a loaded one. ``free_port`` picks
from the same ephemeral range, so on a machine where other programs' UDP clients come and go
it sometimes returns such a port, and the VM's bind fails with EADDRINUSE. Reproduced every
time by closing a host client right after its mirror appeared and binding its port in the
VM at once.

So the server picks its port itself, inside the VM, below the ephemeral range (where no
client is ever bound by the kernel), binds both families in one process (no window between
the two binds) and skips a port that a host listener holds, read by sock_diag (no probe
socket on the host, which the VM would mirror in turn).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from proxy.discovery import snapshot

LOWEST_PORT = 20_000

DUAL_STACK_ECHO = r"""
import random, select, socket, sys
lowest, highest = int(sys.argv[1]), int(sys.argv[2])
busy = {int(p) for p in sys.argv[3].split(",") if p}
for _ in range(200):
    port = random.randrange(lowest, highest)
    if port in busy:
        continue
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        s4.bind(("0.0.0.0", port))
        s6.bind(("::", port))
        break
    except OSError:
        s4.close()
        s6.close()
else:
    sys.exit("no UDP port free in the VM")
print("ready", port, flush=True)
while True:
    for s in select.select([s4, s6], [], [])[0]:
        data, peer = s.recvfrom(70000)
        s.sendto(data, peer)
"""


def ephemeral_low() -> int:
    """The lowest port the kernel hands out on its own (net.ipv4.ip_local_port_range)."""
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def host_udp_ports() -> set[int]:
    return {listener.port for listener in snapshot() if listener.proto == "udp"}


def start_dual_stack_udp_echo(vm_prefix: list[str]) -> tuple[subprocess.Popen[str], int]:
    """The echo server, run with ``vm_prefix``, and its port."""
    busy = ",".join(str(port) for port in sorted(host_udp_ports()))
    proc = subprocess.Popen(
        [
            *vm_prefix, sys.executable, "-c", DUAL_STACK_ECHO,
            str(LOWEST_PORT), str(max(ephemeral_low(), LOWEST_PORT + 1000)), busy,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    ready, port = proc.stdout.readline().split()
    assert ready == "ready"
    return proc, int(port)
