"""Transport addresses as users and the daemon write them."""

from __future__ import annotations

import socket

import pytest

from proxy.addresses import AddressError
from vm.transport.address import TransportAddress, parse_transport


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/hostnet/agent.sock", TransportAddress("unix", path="/run/hostnet/agent.sock")),
        ("tcp:127.0.0.1:5123", TransportAddress("tcp", host="127.0.0.1", port=5123)),
        ("tcp:[::1]:5123", TransportAddress("tcp", host="::1", port=5123)),
        ("vsock:3:5123", TransportAddress("vsock", cid=3, port=5123)),
        ("vsock:ANY:5123", TransportAddress("vsock", cid=socket.VMADDR_CID_ANY, port=5123)),
    ],
)
def test_parses(text: str, expected: TransportAddress) -> None:
    assert parse_transport(text) == expected


def test_round_trip_and_fd_passing() -> None:
    for text in ("unix:/a.sock", "tcp:[::1]:1", "vsock:3:4"):
        assert str(parse_transport(text)) == text
    assert parse_transport("unix:/a.sock").passes_fds
    assert not parse_transport("tcp:127.0.0.1:1").passes_fds


@pytest.mark.parametrize(
    "text", ["", "unix:", "udp:1.2.3.4:5", "vsock:x:1", "tcp:host:1", "tcp:1.2.3.4"]
)
def test_bad_addresses_name_the_forms(text: str) -> None:
    with pytest.raises(AddressError, match="unix:"):
        parse_transport(text)
