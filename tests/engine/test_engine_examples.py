"""The seed's host-networking examples, typed as written, against a real engine in the VM.

The image stands in for nicolaka/netshoot (see images.py): OpenBSD netcat and busybox.
"""

from __future__ import annotations

import http.server
import json
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.engine.engine_fixture import EngineSession, host_text_reaches_log, needs_engine
from tests.integration.vm_helpers import free_port, host_answer, start_server, tcp_open, wait_for

pytestmark = needs_engine


def read_line(proc: subprocess.Popen[str], timeout: float = 15) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line from the container in time"
    return proc.stdout.readline()


@contextmanager
def host_web_server(port: int, page: bytes) -> Iterator[None]:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def mirrored_to_vm(engine: EngineSession, port: int) -> None:
    wait_for(
        lambda: engine.daemon.port_state("host-to-vm", "tcp", port, "127.0.0.1") == "active",
        10,
        f"the VM mirror of host port {port}",
    )


def test_net_host_netcat_listener_talks_to_the_host_both_ways(engine: EngineSession) -> None:
    """Seed example 1: ``docker run --net=host IMG nc -lkv 0.0.0.0 8000``, then on the host
    ``nc localhost 8000``: what the host types appears in the container, and the reverse."""
    port = free_port("tcp")
    started = engine.docker(
        "run", "-d", "--net=host", engine.image, "nc", "-lk", "0.0.0.0", str(port)
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    wait_for(lambda: tcp_open("127.0.0.1", port), 15, "the container's port on the host")
    host_text_reaches_log(lambda: engine.docker("logs", container).stdout, port, 10)
    # The reverse: what is typed into a container (docker run -i) reaches the host.
    port = free_port("tcp")
    listener = engine.docker_popen(
        "run", "--rm", "-i", "--net=host", engine.image, "nc", "-lk", "0.0.0.0", str(port)
    )
    try:
        wait_for(lambda: tcp_open("127.0.0.1", port), 15, "the interactive container's port")
        with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
            conn.sendall(b"host says hi\n")
            assert read_line(listener) == "host says hi\n"
            assert listener.stdin is not None
            listener.stdin.write("container says hi\n")
            listener.stdin.flush()
            conn.settimeout(10)
            assert conn.recv(100) == b"container says hi\n"
    finally:
        listener.kill()
        listener.wait()


def test_net_host_container_reaches_a_web_server_on_the_hosts_port_80(
    engine: EngineSession,
) -> None:
    """Seed example 2: a web server on the host's port 80; from a ``--net=host`` container,
    ``nc localhost 80`` gets its page."""
    if tcp_open("127.0.0.1", 80):
        pytest.skip("something on this host already listens on port 80")
    with host_web_server(80, b"the host's page\n"):
        mirrored_to_vm(engine, 80)
        request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /usr/bin/nc -N localhost 80"
        result = engine.docker("run", "--rm", "--net=host", engine.image, "sh", "-c", request)
    assert result.returncode == 0, result.stderr
    assert "200 OK" in result.stdout
    assert result.stdout.endswith("the host's page\n")


def test_udp_both_ways_with_a_net_host_container(engine: EngineSession) -> None:
    # The container listens: a datagram from the host reaches it, its answer comes back.
    port = free_port("udp")
    listener = engine.docker_popen(
        "run", "--rm", "-i", "--net=host", engine.image, "nc", "-u", "-l", "0.0.0.0", str(port)
    )
    try:
        wait_for(
            lambda: engine.daemon.port_state("vm-to-host", "udp", port, "127.0.0.1") == "active",
            15,
            "the container's UDP port on the host",
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(b"datagram from the host\n", ("127.0.0.1", port))
            assert read_line(listener) == "datagram from the host\n"
            assert listener.stdin is not None
            listener.stdin.write("datagram from the container\n")
            listener.stdin.flush()
            assert client.recv(100) == b"datagram from the container\n"
    finally:
        listener.kill()
        listener.wait()
    # The host listens: the container's datagram reaches a UDP echo server on the host.
    port = free_port("udp")
    server = start_server([], "udp", "127.0.0.1", port)
    try:
        wait_for(
            lambda: engine.daemon.port_state("host-to-vm", "udp", port, "127.0.0.1") == "active",
            10,
            "the VM mirror of the host's UDP port",
        )
        send = f"echo ping | /usr/bin/nc -u -w 3 127.0.0.1 {port}"
        result = engine.docker("run", "--rm", "--net=host", engine.image, "sh", "-c", send)
        assert result.stdout.startswith("echo:ping"), (result.stdout, result.stderr)
    finally:
        server.kill()
        server.wait()


def test_published_ports_with_host_networking_print_dockers_warning(
    engine: EngineSession,
) -> None:
    result = engine.docker("run", "--rm", "--net=host", "-p", "9999:80", engine.image, "true")
    assert result.returncode == 0, result.stderr
    assert "Published ports are discarded when using host network mode" in result.stderr


def test_bridge_container_with_a_published_port_answers_on_the_host(
    engine: EngineSession,
) -> None:
    """``docker run -d -p 8080:80 IMG httpd``: docker-proxy's VM listener is mirrored."""
    port = free_port("tcp")
    started = engine.docker(
        "run", "-d", "-p", f"{port}:80", engine.image, "httpd", "-f", "-p", "80", "-h", "/www"
    )
    assert started.returncode == 0, started.stderr
    wait_for(lambda: tcp_open("127.0.0.1", port), 15, "the published port on the host")
    answer = host_answer("tcp", "127.0.0.1", port, b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b"hello from the container\n")


@pytest.mark.parametrize("network", ["bridge", "user-defined"])
def test_bridge_container_reaches_the_hosts_loopback_as_host_docker_internal(
    engine: EngineSession, network: str
) -> None:
    port = free_port("tcp")
    args = []
    if network == "user-defined":
        name = f"hostnet-test-{port}"
        assert engine.docker("network", "create", name).returncode == 0
        args = ["--network", name]
    try:
        with host_web_server(port, b"served on the host's 127.0.0.1\n"):
            mirrored_to_vm(engine, port)
            url = f"http://host.docker.internal:{port}/"
            result = engine.docker("run", "--rm", *args, engine.image, "wget", "-qO-", url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "served on the host's 127.0.0.1\n"
    finally:
        if args:
            engine.docker("network", "rm", args[1])


def test_ports_name_the_container_and_process_that_listen(engine: EngineSession) -> None:
    port = free_port("tcp")
    name = f"owner-{port}"
    started = engine.docker(
        "run", "-d", "--name", name, "--net=host", engine.image, "nc", "-lk", "0.0.0.0", str(port)
    )
    assert started.returncode == 0, started.stderr

    def owner(ports: list[dict[str, Any]]) -> dict[str, Any] | None:
        for entry in ports:
            if (entry["direction"], entry["port"]) == ("vm-to-host", port) and entry["owner"]:
                return dict(entry["owner"])
        return None

    wait_for(lambda: owner(engine.daemon.ports()) is not None, 15, "the port's owner")
    found = owner(json.loads(engine.daemon.cli("ports", "--json").stdout))
    assert found is not None
    assert (found["container"], found["image"], found["process"]) == (
        name,
        engine.image,
        "nc",
    )
    pid = engine.client.containers.get(name).attrs["State"]["Pid"]
    assert found["pid"] == pid
    table = engine.daemon.cli("ports").stdout
    assert f"nc[{pid}] container {name}" in table


def running(engine: EngineSession, container: str) -> bool:
    return bool(engine.client.containers.get(container).attrs["State"]["Running"])


def test_turning_host_networking_off_leaves_containers_running(engine: EngineSession) -> None:
    port = free_port("tcp")
    started = engine.docker(
        "run", "-d", "--net=host", engine.image, "nc", "-lk", "0.0.0.0", str(port)
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    wait_for(lambda: tcp_open("127.0.0.1", port), 15, "the container's port on the host")
    try:
        assert (
            engine.daemon.cli("settings", "set", "HostNetworkingEnabled", "false").returncode == 0
        )
        wait_for(lambda: not tcp_open("127.0.0.1", port), 5, "the port to leave the host")
        assert engine.daemon.client.get("/v1/status")["state"] == "off"
        assert running(engine, container)
        assert engine.engine_state() == "running"
    finally:
        engine.settings()
    wait_for(lambda: tcp_open("127.0.0.1", port), 10, "the port to come back")


def test_enhanced_container_isolation_refuses_host_networking_not_containers(
    engine: EngineSession,
) -> None:
    port = free_port("tcp")
    started = engine.docker(
        "run", "-d", "--net=host", engine.image, "nc", "-lk", "0.0.0.0", str(port)
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    wait_for(lambda: tcp_open("127.0.0.1", port), 15, "the container's port on the host")
    try:
        engine.settings(EnhancedContainerIsolation=True)
        wait_for(lambda: not tcp_open("127.0.0.1", port), 5, "forwarding to stop")
        status = engine.daemon.client.get("/v1/status")
        assert status["state"] == "refused"
        assert [r["setting"] for r in status["reasons"]] == ["EnhancedContainerIsolation"]
        assert status["engine"]["state"] == "running"
        assert running(engine, container)
        # New containers still start and run; only their ports stay in the VM.
        again = engine.docker("run", "--rm", engine.image, "echo", "still runs")
        assert again.stdout == "still runs\n", again.stderr
        text = engine.daemon.cli("status").stdout
        assert "Enhanced Container Isolation" in text or "EnhancedContainerIsolation" in text
        assert "engine: running" in text
    finally:
        engine.settings()
    wait_for(lambda: tcp_open("127.0.0.1", port), 10, "forwarding to come back")
