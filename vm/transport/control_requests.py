"""Requests over a control connection, and sockets handed over in their answers.

Where both sides share a kernel (a unix transport), opening a stream needs no connection of
its own: one side sends ``Request(id, "open", {proto, host, port})`` on the control
connection, the other connects that target and answers ``Response(id, ok)`` with the
connected socket attached (SCM_RIGHTS). One round trip, no handshake, one splice after.
Only an ok answer to "open" carries a socket, so both sides agree which frame owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Iterable
from typing import Any

from proxy.listeners import Listener
from proxy.wire import ErrorCode, Proto, ProtocolError, Request, Response
from proxy.wire.bounded_json import JsonValue
from vm.transport.targets import TargetError, connect_target, listening_now
from vm.transport.wire_socket import WireSocket

OPEN = "open"
REQUEST_TIMEOUT = 10.0


def open_params(proto: Proto, host: str, port: int) -> dict[str, JsonValue]:
    return {"proto": proto, "host": host, "port": port}


def parse_open(params: dict[str, Any]) -> tuple[Proto, str, int]:
    """The target of an "open" request, checked; TargetError if it is malformed."""
    proto, host, port = params.get("proto"), params.get("host"), params.get("port")
    if proto not in ("tcp", "udp") or not isinstance(host, str) or not isinstance(port, int):
        raise TargetError(ErrorCode.BAD_MESSAGE, f"bad open request {params!r}")
    if not 1 <= port <= 65535:
        raise TargetError(ErrorCode.BAD_MESSAGE, f"port {port} is outside 1..65535")
    return proto, host, port


def refusal(request_id: int, exc: TargetError) -> Response:
    return Response(request_id, False, {"code": int(exc.code), "message": str(exc)[:900]})


class RequestTracker:
    """Ids and futures of this side's requests; resolved as the peer's Responses arrive."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[
            int, tuple[str, asyncio.Future[tuple[Response, socket.socket | None]]]
        ] = {}

    async def call(
        self,
        wire: WireSocket,
        method: str,
        params: dict[str, JsonValue],
        timeout: float = REQUEST_TIMEOUT,
    ) -> tuple[Response, socket.socket | None]:
        request_id = next(self._ids)
        future: asyncio.Future[tuple[Response, socket.socket | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[request_id] = (method, future)
        try:
            await wire.send(Request(request_id, method, params))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)

    async def open(self, wire: WireSocket, proto: Proto, host: str, port: int) -> socket.socket:
        """A socket connected to ``proto host:port`` on the other side, handed over."""
        try:
            response, handed = await self.call(wire, OPEN, open_params(proto, host, port))
        except TimeoutError:
            raise TargetError(ErrorCode.TIMEOUT, f"no answer to open {proto} {port}") from None
        if response.ok and handed is not None:
            return handed
        if handed is not None:
            handed.close()
        result = response.result if isinstance(response.result, dict) else {}
        try:
            code = ErrorCode(int(result.get("code", ErrorCode.INTERNAL)))
        except ValueError:
            code = ErrorCode.INTERNAL
        raise TargetError(code, str(result.get("message", "the other side refused")))

    def expects_socket(self, response: Response) -> bool:
        entry = self._pending.get(response.id)
        return entry is not None and entry[0] == OPEN and response.ok

    def resolve(self, response: Response, handed: socket.socket | None) -> None:
        entry = self._pending.pop(response.id, None)
        if entry is None or entry[1].done():
            if handed is not None:
                handed.close()  # an answer nobody waits for any more
            return
        entry[1].set_result((response, handed))

    def fail_all(self, message: str) -> None:
        for _method, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(message))
        self._pending.clear()


async def serve_open_request(
    wire: WireSocket, request: Request, listeners: Iterable[Listener], side: str
) -> None:
    """Answer an "open" request: connect the target if it listens on this ``side`` right now,
    and hand the connected socket over in the answer; a refusal names the reason."""
    try:
        proto, host, port = parse_open(request.params)
        if not listening_now(listeners, proto, host, port):
            raise TargetError(
                ErrorCode.NOT_LISTENING, f"nothing listens on {proto} port {port} at {host} {side}"
            )
        target = await connect_target(proto, host, port)
    except TargetError as exc:
        with contextlib.suppress(ProtocolError, OSError):
            await wire.send(refusal(request.id, exc))
        return
    try:
        await wire.send(Response(request.id, True), (target.fileno(),))
    except (ProtocolError, OSError):
        pass
    finally:
        target.close()
