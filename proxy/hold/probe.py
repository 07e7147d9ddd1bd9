"""The "probe" request both sides answer for the other's hold: who listens on this port here?

The asking side holds a first packet; the answering side runs a targeted check on its own
namespace, leaves its own mirrors out (never mirror a mirror), tells its discovery at once
(so the listener is reported, and its removal later, through the usual path) and answers
with the addresses that listen. The asking side then makes its mirrors before it lets the
packet go.
"""

from __future__ import annotations

from collections.abc import Callable, Container
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


def parse_answer(result: object) -> list[str]:
    """The listening addresses in a probe's answer (only those a mirror may reach)."""
    if not isinstance(result, list) or not all(isinstance(host, str) for host in result):
        raise ProbeError(f"bad probe answer {result!r}", "answer a list of addresses")
    return [host for host in result if host in MIRRORABLE_HOSTS]


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
