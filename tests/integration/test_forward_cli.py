"""``hostnet forward`` as a user runs it: a real process, real sockets, clear errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.other_user import other_user, why_unusable

HOSTNET = str(Path(sys.executable).with_name("hostnet"))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_forward(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [HOSTNET, "forward", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "hostnet forward:" in line, proc.stderr.read() if proc.stderr else line
    return proc


@pytest.fixture
def tcp_echo_server() -> Iterator[int]:
    port = free_port()  # socat cannot report a kernel-chosen port, so pick a free one
    proc = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", "EXEC:cat"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait()


def test_tcp_forward_end_to_end_and_clean_exit(tcp_echo_server: int) -> None:
    listen = free_port()
    proc = start_forward("--listen", f"127.0.0.1:{listen}", "--to", f"127.0.0.1:{tcp_echo_server}")
    try:
        with socket.create_connection(("127.0.0.1", listen), timeout=5) as c:
            c.sendall(b"through the relay")
            c.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := c.recv(1024):
                data += chunk
        assert data == b"through the relay"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0


def test_udp_forward_end_to_end() -> None:
    port = free_port(socket.SOCK_DGRAM)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", port))
    listen = free_port(socket.SOCK_DGRAM)
    proc = start_forward("--udp", "--listen", f"127.0.0.1:{listen}", "--to", f"127.0.0.1:{port}")
    try:
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        client.sendto(b"ping", ("127.0.0.1", listen))
        server.settimeout(5)
        data, peer = server.recvfrom(100)
        server.sendto(b"pong:" + data, peer)
        assert client.recv(100) == b"pong:ping"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    # 60 s: at a load of 20 on two cores the CLI alone takes over 10 s to start
    return subprocess.run([HOSTNET, "forward", *args], capture_output=True, text=True, timeout=60)


def test_busy_port_is_named_with_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--listen", f"127.0.0.1:{port}", "--to", "127.0.0.1:9")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "choose another port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable()))
def test_privileged_port_is_named_with_the_fix() -> None:
    with other_user() as nobody:
        result = subprocess.run(
            [*nobody.hostnet(), "forward", "--listen", "127.0.0.1:81", "--to", "127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "port 81 is privileged" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1", "HOST:PORT expected"),
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:70000", "outside 1..65535"),
        ("::1:80", "put an IPv6 address in brackets"),
        ("example.com:80", "is not an IP address"),
        ("[::1:80", "needs [brackets]:PORT"),
    ],
)
def test_bad_address_is_explained(listen: str, message: str) -> None:
    result = run_cli("--listen", listen, "--to", "127.0.0.1:9")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_address_not_on_this_machine() -> None:
    result = run_cli("--listen", "192.0.2.1:8080", "--to", "127.0.0.1:9")
    assert result.returncode == 1
    assert "not an address of this machine" in result.stderr
