"""The "probe" request both sides answer for the other's hold: who listens on this port here?

The asking side holds a first packet; the answering side runs a targeted check on its own
namespace, leaves its own mirrors out (never mirror a mirror), tells its discovery at once
(so the listener is reported, and its removal later, through the usual path) and answers
with the addresses that listen. The asking side then makes its mirrors before it lets the
packet go.

An answer may also say ``kernel``: the answering side has put the port in the kernel path's
rules (proxy/nat) before answering, so the asking side sends the held packets again through
those rules (``proxy/hold/flow_resend.py``) instead of letting them reach its new mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Final

from proxy.errors import HostnetError
from proxy.hold.port_check import PortCheck
from proxy.listeners import Listener, Proto
from proxy.mirror_set import MIRRORABLE_HOSTS
from proxy.wire.bounded_json import JsonValue

PROBE: Final = "probe"
HOLD_STATUS: Final = "hold"
"""The request for a side's hold status (``HoldSide.status``)."""
PROBE_TIMEOUT: Final = 2.0
"""Seconds a held packet waits for the other side's answer; a healthy side answers in well
under a millisecond, a loaded machine has been seen to take over half a second."""


class ProbeError(HostnetError, ValueError):
    """A malformed probe or answer; the message says what was wrong."""


def probe_params(proto: Proto, port: int) -> dict[str, JsonValue]:
    return {"proto": proto, "port": port}


def parse_probe(params: dict[str, Any]) -> tuple[Proto, int]:
    proto, port = params.get("proto"), params.get("port")
    if proto not in ("tcp", "udp") or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ProbeError(f"bad probe {params!r}", "send proto tcp or udp and a port 1..65535")
    return proto, port


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """Who listens on the probed port (only addresses a mirror may reach), and whether the
    answering side's kernel rules now carry the port's IPv4 flows."""

    hosts: list[str]
    kernel: bool = False

    def to_json(self) -> JsonValue:
        return {"hosts": list(self.hosts), "kernel": self.kernel}


def parse_answer(result: object) -> ProbeAnswer:
    """A probe's answer: ``{"hosts": [...], "kernel": bool}``, or a bare list of hosts."""
    kernel: object = False
    if isinstance(result, dict):
        kernel = result.get("kernel", False)
        result = result.get("hosts")
    if (
        not isinstance(result, list)
        or not all(isinstance(host, str) for host in result)
        or not isinstance(kernel, bool)
    ):
        raise ProbeError(
            f"bad probe answer {result!r}", 'answer {"hosts": [addresses], "kernel": bool}'
        )
    return ProbeAnswer([host for host in result if host in MIRRORABLE_HOSTS], kernel)


def answer_probe(
    check: PortCheck,
    params: dict[str, Any],
    own_inodes: Container[int],
    adopt: Callable[[frozenset[Listener]], None],
) -> list[str]:
    """Run the targeted check for a probe and pass what it found to discovery (``adopt``)."""
    proto, port = parse_probe(params)
    found = check.listeners(proto, port, own_inodes)
    if found:
        adopt(found)
    return sorted({host for item in found for host in item.hosts if host in MIRRORABLE_HOSTS})
