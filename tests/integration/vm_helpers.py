"""Running real programs inside the namespace VM, and waiting for ports, for the tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vm.backends.netns import NetnsVM

SERVER = r"""
import socket, sys, threading
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
if proto == "tcp":
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port)); s.listen(128)
    print("ready", flush=True)
    def serve(c):
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        c.sendall(b"echo:" + data); c.close()
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(b"echo:" + data, peer)
"""

CLIENT = r"""
import socket, sys
proto, host, port, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if proto == "tcp":
        c = socket.create_connection((host, port), timeout=3)
        c.sendall(payload); c.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    else:
        c = socket.socket(family, socket.SOCK_DGRAM); c.settimeout(2)
        c.sendto(payload, (host, port)); data = c.recv(65536)
    print(data.decode())
except OSError as exc:
    print(f"error:{type(exc).__name__}")
"""


def start_server(
    prefix: list[str], proto: str, host: str, port: int, python: str = sys.executable
) -> subprocess.Popen[str]:
    """An echo server (``echo:`` + request) run with ``prefix`` (e.g. ``ip netns exec NS``)."""
    proc = subprocess.Popen(
        [*prefix, python, "-c", SERVER, proto, host, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def run_client(
    prefix: list[str], proto: str, host: str, port: int, payload: str, python: str = sys.executable
) -> str:
    """Send ``payload`` and return the answer, or ``error:<Exception>``."""
    result = subprocess.run(
        [*prefix, python, "-c", CLIENT, proto, host, str(port), payload],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return result.stdout.strip()


def host_answer(proto: str, host: str, port: int, payload: bytes, timeout: float = 2) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if proto == "tcp":
        with socket.create_connection((host, port), timeout=timeout) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            return data
    with socket.socket(family, socket.SOCK_DGRAM) as c:
        c.settimeout(timeout)
        c.sendto(payload, (host, port))
        return c.recv(65536)


def wait_for(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tcp_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def free_port(proto: str = "tcp") -> int:
    """A port free on the host for both families (the VM's ports are all free)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    while True:
        with socket.socket(socket.AF_INET, kind) as s4:
            s4.bind(("127.0.0.1", 0))
            port = int(s4.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET6, kind) as s6:
                    s6.bind(("::1", port))
            except OSError:
                continue
            if 20000 <= port <= 60000:
                return port


@contextmanager
def bare_namespace(vm_dir: Path) -> Iterator[NetnsVM]:
    """A namespace VM's network (namespace, veth pair, addresses) with no agent in it."""
    vm = NetnsVM(vm_dir)
    options = [f"--{key.replace('_', '-')}={value}" for key, value in vm.addresses().items()]
    setup = [sys.executable, "-m", "vm.backends.netns_setup"]
    subprocess.run(
        [*setup, "create", vm.name, vm.host_if, vm.vm_if, *options], check=True, capture_output=True
    )
    try:
        yield vm
    finally:
        subprocess.run([*setup, "remove", vm.name], capture_output=True)
