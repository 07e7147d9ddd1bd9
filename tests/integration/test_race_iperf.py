"""`iperf3 -u` through a VM mirror (issue 16): its server binds the UDP port only when a test
starts, and the client's first datagram follows at once. Held, it gets through, and the loss
at 30,000 datagrams/s of 1,200 bytes is no worse than direct + 0.5 points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.race_world import RaceWorld, race_world
from tests.integration.vm_helpers import wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed"),
    pytest.mark.slow,
]

RATE = 30_000 * 1200 * 8  # bits/s: 30k datagrams/s of 1,200 B
SECONDS = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaceWorld]:
    with race_world(tmp_path_factory.mktemp("hostnet-iperf"), first_port=31000) as made:
        yield made


def udp_loss(client_netns: str, server_netns: str, port: int) -> float:
    """Lost percent of one UDP run; the server is started right before the client."""
    server = subprocess.Popen(
        ["nsenter", f"--net={server_netns}", "iperf3", "-s", "-1", "--forceflush", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        while "Server listening" not in (line := server.stdout.readline()):
            assert line, "iperf3 -s exited before it listened"
        done = subprocess.run(
            ["nsenter", f"--net={client_netns}", "iperf3", "-c", "127.0.0.1", "-p", str(port),
             "-u", "-b", str(RATE), "-l", "1200", "-t", str(SECONDS), "-J"],
            capture_output=True, text=True, timeout=SECONDS + 30, check=False,
        )  # fmt: skip
        report = json.loads(done.stdout)
        assert "error" not in report, report["error"]
        loss = float(report["end"]["sum"]["lost_percent"])
        print(f"iperf3 -u {client_netns} -> {server_netns}: {loss:.2f}% lost")
        return loss
    finally:
        server.kill()
        server.wait()


def test_iperf3_udp_through_the_mirror_gets_through(world: RaceWorld) -> None:
    """Before the hold, iperf3 -u failed with "Connection refused" (3 of 3)."""
    vm_netns = f"/run/netns/{world.daemon.netns['name']}"
    for _ in range(3):
        assert udp_loss(world.host_netns, vm_netns, next(world.ports)) < 100


def test_iperf3_udp_through_the_mirror_loses_no_more_than_direct(world: RaceWorld) -> None:
    """The server binds its UDP port when the test starts, so the client's first datagrams
    are held; they are then sent again through the kernel path's rules (proxy/hold/
    flow_resend.py), which carry the whole flow. Before, the flow stayed on the user-space
    relay that its first datagram had reached (1.09 % lost beside 0.07 % direct, quiet)."""
    status = world.daemon.client.get
    wait_for(lambda: status("/v1/status")["data_path"]["active"] == "kernel", 10, "the kernel path")
    vm_netns = f"/run/netns/{world.daemon.netns['name']}"
    direct = udp_loss(vm_netns, vm_netns, next(world.ports))
    mirrored = udp_loss(world.host_netns, vm_netns, next(world.ports))
    assert mirrored <= direct + 0.5, (
        f"loss {mirrored:.2f}% through the mirror, {direct:.2f}% direct"
    )
