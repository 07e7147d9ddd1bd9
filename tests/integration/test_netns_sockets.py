"""Sockets made by a daemon thread inside the namespace VM: they live in the VM's network."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.vm_helpers import bare_namespace, free_port, start_server
from vm.transport.namespace_sockets import NamespaceSockets

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


@pytest.fixture
def namespace(tmp_path: Path) -> Iterator[str]:
    with bare_namespace(tmp_path / "vm") as vm:
        yield vm.name


def test_sockets_connect_inside_the_vm_and_the_namespace_is_released(namespace: str) -> None:
    port = free_port()
    server = start_server(["ip", "netns", "exec", namespace], "tcp", "127.0.0.1", port)
    host_side = socket.socket()
    host_side.bind(("127.0.0.1", port))  # the same port is free on the host: other network
    host_side.listen()
    sockets = NamespaceSockets(f"/run/netns/{namespace}", pool_target=4)
    sockets.start(kinds=((socket.AF_INET, socket.SOCK_STREAM),))
    try:
        for i in range(10):  # more than the pool holds: the thread refills
            sock = sockets.take(socket.AF_INET)
            sock.setblocking(True)
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"vm{i}".encode())
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == f"echo:vm{i}".encode()  # the VM's server answered
            sock.close()
    finally:
        sockets.stop()
        server.kill()
        server.wait()
        host_side.close()
    assert sockets._thread is not None and not sockets._thread.is_alive()


def test_a_namespace_that_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    sockets = NamespaceSockets(str(tmp_path / "no-such-namespace"))
    with pytest.raises(OSError, match="cannot enter"):
        sockets.start()
