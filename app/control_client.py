"""A small blocking client of the daemon's control API, for the CLI (stdlib http.client)."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from proxy.errors import HostnetError


class DaemonUnavailable(HostnetError, ConnectionError):
    """No daemon answers on the control socket."""


class ControlError(HostnetError):
    """The daemon answered with an error; ``code`` and the message say what and how to fix it."""

    def __init__(self, status: int, kind: str, problem: str, fix: str = "") -> None:
        super().__init__(problem, fix)
        self.status = status
        self.kind = kind


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("hostnet", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        conn = _UnixConnection(self.socket_path, self.timeout)
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonUnavailable(
                f"no hostnet daemon is running (nothing answers on {self.socket_path})",
                "start it with `hostnet daemon`",
            ) from exc
        finally:
            conn.close()
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = None
        if response.status >= 400:
            info = decoded if isinstance(decoded, dict) else {}
            raise ControlError(
                response.status,
                str(info.get("error", response.status)),
                str(info.get("problem") or info.get("message") or data[:200]),
                str(info.get("fix") or ""),
            )
        return decoded

    def get(self, path: str) -> Any:
        return self.call("GET", path)
