"""Malformed requests to the daemon's control API, sent with nothing but a unix socket (as a
buggy script or curl would): each gets a clear JSON error naming the problem, never a
traceback, and the daemon goes on serving. Clients that send half a request or open the
event stream and never read cost bounded memory.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import RunningDaemon, daemon_session
from tests.integration.vm_helpers import wait_for
from tests.reliability.figures import record
from tests.reliability.leaks import fd_count

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    home = tmp_path_factory.mktemp("bad-api") / "home"
    session = daemon_session(home, {"HostNetworkingEnabled": True})
    running = next(session)
    yield running
    log = (home / "log" / "daemon.log").read_text()
    with pytest.raises(StopIteration):
        next(session)
    assert "Traceback" not in log, log[log.index("Traceback") - 200 :][:3000]


def connect(daemon: RunningDaemon) -> socket.socket:
    for _ in range(500):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        try:
            sock.connect(str(daemon.home / "run" / "control.sock"))
            return sock
        except BlockingIOError:  # the listen backlog is full for a moment: as a client would
            sock.close()
            time.sleep(0.01)
    raise AssertionError("the daemon's control socket stayed full")


def exchange(daemon: RunningDaemon, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` as it is; the status and body of the answer."""
    with connect(daemon) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before taking all of a huge body
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, answer.read()


def request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: hostnet\r\nConnection: close\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def json_error(body: bytes) -> dict[str, str]:
    assert b"Traceback" not in body
    answer = json.loads(body)
    assert isinstance(answer, dict) and answer["error"] and answer["message"], answer
    return answer


MALFORMED = [
    ("bad JSON", request("PUT", "/v1/settings", b'{"HostNetworkingEnabled": tru'), 400, "bad-json"),
    ("not UTF-8", request("PUT", "/v1/settings", b"\xff\xfe{}"), 400, "bad-json"),
    ("empty body", request("PUT", "/v1/settings"), 400, "bad-json"),
    ("deeply nested JSON", request("PUT", "/v1/settings", b"[" * 60_000), 400, "bad-json"),
    ("a list, not an object", request("PUT", "/v1/settings", b"[1, 2]"), 400, "bad-body"),
    (
        "wrong type",
        request("PUT", "/v1/settings", b'{"HostNetworkingExcludedPorts": "5432"}'),
        400,
        "bad-value",
    ),
    (
        "unknown key",
        request("PUT", "/v1/settings", b'{"NoSuchSetting": 1}'),
        404,
        "unknown-setting",
    ),
    ("wrong method", request("DELETE", "/v1/status"), 405, "method-not-allowed"),
    ("GET on a POST", request("GET", "/v1/vm/exec"), 405, "method-not-allowed"),
    ("unknown path", request("GET", "/v2/anything"), 404, "not-found"),
    ("path traversal", request("GET", "/v1/../../etc/passwd"), 404, "not-found"),
    ("exec argv not a list", request("POST", "/v1/vm/exec", b'{"argv": 5}'), 400, "refused"),
    ("exec body not JSON", request("POST", "/v1/vm/exec", b"argv=ls"), 400, "bad-json"),
    ("kill without pid", request("POST", "/v1/vm/kill", b"{}"), 400, "refused"),
]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_request_gets_a_clear_json_error(
    daemon: RunningDaemon, raw: bytes, status: int, code: str
) -> None:
    got, body = exchange(daemon, raw)
    assert (got, json_error(body)["error"]) == (status, code), body[:300]
    assert daemon.client.get("/v1/status")["agent"]["state"] == "connected"


def test_huge_bodies_are_refused_without_reading_them(daemon: RunningDaemon) -> None:
    """A declared 1 GB body is refused at once; a chunked one past the bound too."""
    status, body = exchange(
        daemon, request("PUT", "/v1/settings", b"{").replace(b"Length: 1", b"Length: 1000000000")
    )
    assert status == 413 and json_error(body)["error"] == "too-large"
    chunk = b"a" * 65536
    chunked = (
        b"PUT /v1/settings HTTP/1.1\r\nHost: hostnet\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(40))
        + b"0\r\n\r\n"
    )
    status, body = exchange(daemon, chunked)
    assert status == 413, body[:200]
    assert b"Traceback" not in body
    assert daemon.client.get("/v1/status")["state"] == "on"


def test_garbage_instead_of_http_is_refused(daemon: RunningDaemon) -> None:
    for garbage in (b"HELLO\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n"):
        status, body = exchange(daemon, garbage)
        assert status == 400
        assert b"Traceback" not in body
    assert daemon.client.get("/v1/status")["state"] == "on"


def test_half_sent_requests_hold_nothing_once_gone(daemon: RunningDaemon) -> None:
    """Clients that send half a request and wait: the daemon keeps serving others, and
    gets every descriptor back when they go."""
    before = fd_count(daemon.proc.pid)
    half = [
        request("PUT", "/v1/settings", b'{"HostNetworkingEnabled": true}').replace(
            b"Length: 31", b"Length: 100"
        ),
        b"GET /v1/status HTTP/1.1\r\nHost: hos",
        b"POST /v1/vm/exec HTTP/1.1\r\nHost: hostnet\r\nContent-Length: 20\r\n\r\n{",
    ]
    clients = []
    try:
        for index in range(150):
            sock = connect(daemon)
            sock.sendall(half[index % len(half)])
            clients.append(sock)
        wait_for(lambda: fd_count(daemon.proc.pid) >= before + 140, 5, "the daemon to take them")
        assert daemon.client.get("/v1/status")["state"] == "on"
    finally:
        for sock in clients:
            sock.close()
    wait_for(lambda: fd_count(daemon.proc.pid) <= before, 5, "the daemon to let them go")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


CHURN = r"""
import socket, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    socks = []
    for _ in range(60):
        s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen(); socks.append(s)
    time.sleep(0.3)
    for s in socks:
        s.close()
    time.sleep(0.2)
"""


@pytest.mark.slow
def test_event_stream_clients_that_never_read_cost_bounded_memory(daemon: RunningDaemon) -> None:
    """Twenty clients open /v1/events and never read while the VM's listeners churn (every
    mirror change is an event): the daemon's memory stays bounded (each subscriber's queue
    holds at most 1000 events, then it is told to resync), and a client that finally reads
    gets the resync."""
    stuck = []
    for _ in range(20):
        sock = connect(daemon)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: hostnet\r\n\r\n")
        stuck.append(sock)
    seconds = 20.0
    churn = subprocess.Popen([*daemon.vm_prefix, "python3", "-c", CHURN, str(seconds)])
    samples = []
    try:
        start = time.monotonic()
        while churn.poll() is None:
            samples.append(rss_kb(daemon.proc.pid))
            time.sleep(0.5)
            assert time.monotonic() - start < seconds + 20
        assert churn.returncode == 0
        assert daemon.client.get("/v1/status")["state"] == "on"
        events = 0
        reader = stuck[0]
        reader.settimeout(5)
        seen = b""
        deadline = time.monotonic() + 15
        while b"event: resync" not in seen and time.monotonic() < deadline:
            chunk = reader.recv(65536)
            assert chunk, "the daemon closed the event stream"
            seen = seen[-100:] + chunk
            events += chunk.count(b"\n\nevent: ")
        assert b"event: resync" in seen, "the stuck client never got a resync"
    finally:
        churn.kill()
        churn.wait()
        for sock in stuck:
            sock.close()
    settled = samples[len(samples) // 4 :]  # after the first subscribers' queues filled
    growth = max(settled) - min(settled)
    assert growth < 40_000, f"daemon memory grew by {growth} kB under stuck event clients"
    record(
        "bad input",
        "event-stream clients that never read",
        20,
        "clients",
        f"{seconds:.0f} s of listener churn; daemon RSS {min(samples) / 1024:.0f}-"
        f"{max(samples) / 1024:.0f} MB, resync delivered",
    )
