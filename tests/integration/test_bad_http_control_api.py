"""Requests the HTTP parser itself refuses (no Host header, a bad request line, bad headers,
a body that cannot be decoded), sent as raw bytes to a real daemon's control socket: each
gets a 400, and the daemon's log gets one line naming the problem, never a traceback."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import RunningDaemon, start_daemon
from tests.integration.vm_helpers import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")

REQUEST_LINE = b"GET /v1/status HTTP/1.1\r\n"

MALFORMED = [
    ("no Host header", REQUEST_LINE + b"\r\n", "Missing 'Host' header"),
    ("two Host headers", REQUEST_LINE + b"Host: a\r\nHost: b\r\n\r\n", "Duplicate 'Host'"),
    ("unknown HTTP version", b"GET /v1/status HTTP/9.9\r\nHost: h\r\n\r\n", "HTTP version"),
    ("bad absolute URL", b"GET http://[x/v1/status HTTP/1.1\r\nHost: h\r\n\r\n", "http://[x"),
    ("negative length", REQUEST_LINE + b"Host: h\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    ("NUL in a header", REQUEST_LINE + b"Host: h\r\nX-Note: a\x00b\r\n\r\n", "header value"),
    (
        "length and chunked",
        REQUEST_LINE + b"Host: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "Transfer-Encoding",
    ),
    (
        "bad chunk size",
        b"PUT /v1/settings HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "chunk size",
    ),
    ("request line too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", "8190"),
]

# Bodies aiohttp only finds bad once the handler reads them: the API answers in JSON.
BAD_BODIES = [
    (
        "not gzip",
        b"PUT /v1/settings HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nabcde",
        "content-encoding: gzip",
    ),
    (
        "not deflate",
        b"POST /v1/vm/exec HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
        b"Content-Encoding: deflate\r\nContent-Length: 5\r\n\r\nabcde",
        "content-encoding: deflate",
    ),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    running = start_daemon(tmp_path_factory.mktemp("bad-http") / "home", {})
    yield running
    running.stop()
    text = daemon_log(running).read_text()
    assert "Traceback" not in text, text[text.find("Traceback") - 200 :][:3000]


def daemon_log(daemon: RunningDaemon) -> Path:
    return daemon.home / "log" / "daemon.log"


def exchange(daemon: RunningDaemon, raw: bytes) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.home / "run" / "control.sock"))
        sock.sendall(raw)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, answer.read()


def new_log_lines(daemon: RunningDaemon, raw: bytes) -> tuple[int, bytes, list[str]]:
    """Send RAW; the answer, and the log lines the daemon wrote about it."""
    log = daemon_log(daemon)
    start = log.stat().st_size
    status, body = exchange(daemon, raw)
    wait_for(lambda: "malformed request" in log.read_text()[start:], 5, "the log line")
    # Anything more (a traceback after the line) would be written in the same call.
    lines = log.read_text()[start:].splitlines()
    return status, body, lines


@pytest.mark.parametrize(
    ("raw", "problem"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_unparsable_request_is_a_400_and_one_log_line(
    daemon: RunningDaemon, raw: bytes, problem: str
) -> None:
    status, body, lines = new_log_lines(daemon, raw)
    assert status == 400
    assert b"Traceback" not in body
    assert [line for line in lines if "malformed request" in line] == lines, lines
    assert len(lines) == 1, lines
    assert "WARNING" in lines[0] and problem in lines[0], lines[0]
    assert daemon.client.get("/v1/status")["vm"]["state"] == "up"


@pytest.mark.parametrize(
    ("raw", "problem"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES]
)
def test_undecodable_body_is_a_json_400_and_one_log_line(
    daemon: RunningDaemon, raw: bytes, problem: str
) -> None:
    status, body, lines = new_log_lines(daemon, raw)
    assert status == 400
    answer = json.loads(body)
    assert answer["error"] == "bad-body" and problem in answer["message"], answer
    assert len(lines) == 1 and problem in lines[0], lines
    assert "Traceback" not in "\n".join(lines)
