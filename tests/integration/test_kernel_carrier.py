"""The daemon's kernel carrier over a real kernel path in two namespaces: mirrors that move
in a burst are one look at what is wanted, not one per mirror, and the rules end up carrying
exactly what the mirrors want."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from app.daemon.kernel_carrier import KernelCarrier
from proxy.nat.kernel_path import KernelPath
from proxy.nat.nft import nft_available
from proxy.nat.ruleset import PortKey
from tests.integration.nat_namespaces import NatPair, nat_pair

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nft need root"),
    pytest.mark.skipif(not nft_available(), reason="libnftables missing: apt install nftables"),
]

PORT = 7511
MIRRORS = 1000


@pytest.fixture
def pair() -> Iterator[NatPair]:
    with nat_pair("carrier") as made:
        yield made


async def settled(carrier: KernelCarrier, wanted: frozenset[PortKey]) -> None:
    for _ in range(200):
        if carrier.path.carried == wanted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the rules carry {sorted(carrier.path.carried)}, not {sorted(wanted)}")


async def test_a_burst_of_mirror_moves_is_one_look_at_the_mirrors(pair: NatPair) -> None:
    wanted: set[PortKey] = set()
    looks = 0

    def current() -> frozenset[PortKey]:
        nonlocal looks
        looks += 1
        return frozenset(wanted)

    carrier = KernelCarrier(KernelPath(pair.link, pair.vm_path, host_netns=pair.host_path), current)
    await carrier.start()
    server = pair.serve("vm", "tcp", "127.0.0.1", PORT)
    try:
        for port in range(PORT, PORT + MIRRORS):  # a thousand mirrors come up in one step
            wanted.add(("to_vm", "tcp", port))
            carrier.mirrors_moved()
        await settled(carrier, frozenset(wanted))
        assert looks <= 2, f"{looks} looks at the mirrors for one burst"
        assert pair.ask("host", "tcp", "127.0.0.1", PORT, "hello") == "127.0.0.1:hello"

        wanted.clear()  # they all go; a setting applied at once needs no further move
        await carrier.apply_now()
        assert carrier.path.carried == frozenset()
        assert pair.ask("host", "tcp", "127.0.0.1", PORT, "hi", 0.5).startswith("error:")
    finally:
        server.kill()
        await carrier.close()
