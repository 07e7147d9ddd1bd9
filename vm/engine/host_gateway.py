"""``host.docker.internal`` for containers on any network, bridge included.

dockerd's ``--host-gateway-ip`` names an address of the VM that containers route to. The
mirrors of host listeners bind the VM's loopback only, so a NAT rule in the VM sends what
containers send to that address on to 127.0.0.1, where the mirrors (and the VM's own
loopback listeners) answer; ``route_localnet`` lets the kernel route to loopback from a
bridge. Port 53 is left alone: the engine's DNS answers there.

Run inside the VM's network namespace: ``nsenter --net=PATH python -m vm.engine.host_gateway
ADDRESS``. The rules are nftables JSON, fed to ``nft -j -f -``; the table is hostnet's own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TABLE = "hostnet_engine"
CONTAINER_INTERFACES = ("docker0", "br-*")
"""The default bridge and user-defined bridge networks (``br-`` and a network id)."""

DNS_PORT = 53
ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")


class HostGatewayError(RuntimeError):
    pass


def ruleset(address: str) -> dict[str, Any]:
    """The table that sends containers' TCP and UDP for ``address`` to the VM's loopback."""
    table = {"family": "ip", "name": TABLE}
    chain = {"family": "ip", "table": TABLE, "name": "prerouting"}
    commands: list[dict[str, Any]] = [
        {"add": {"table": table}},
        {"flush": {"table": table}},
        {
            "add": {
                "chain": {
                    **chain,
                    "type": "nat",
                    "hook": "prerouting",
                    "prio": -100,
                    "policy": "accept",
                }
            }
        },
    ]
    for interface in CONTAINER_INTERFACES:
        expressions = [
            _match("==", {"meta": {"key": "iifname"}}, interface),
            _match("==", {"payload": {"protocol": "ip", "field": "daddr"}}, address),
            _match("==", {"meta": {"key": "l4proto"}}, {"set": ["tcp", "udp"]}),
            _match("!=", {"payload": {"protocol": "th", "field": "dport"}}, DNS_PORT),
            {"dnat": {"addr": "127.0.0.1"}},
        ]
        rule = {"family": "ip", "table": TABLE, "chain": "prerouting", "expr": expressions}
        commands.append({"add": {"rule": rule}})
    return {"nftables": commands}


def _match(op: str, left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def apply(address: str) -> None:
    """Install the rules in the current network namespace (the caller entered the VM's)."""
    ROUTE_LOCALNET.write_text("1\n")
    result = subprocess.run(
        ["nft", "-j", "-f", "-"],
        input=json.dumps(ruleset(address)),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HostGatewayError(f"nft refused the host gateway rules: {result.stderr.strip()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vm.engine.host_gateway")
    parser.add_argument("address", help="the VM address dockerd's --host-gateway-ip names")
    args = parser.parse_args(argv)
    try:
        apply(args.address)
    except (OSError, HostGatewayError) as exc:
        print(f"host gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
