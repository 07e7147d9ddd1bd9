"""Whether a Docker Engine answers on a unix socket (its ``/_ping`` endpoint), and what it
says of itself (``/info``)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

PING_TIMEOUT = 2.0
INFO_LIMIT = 1 << 20


class EngineAnswerError(OSError):
    """The engine's API answered, but not as an engine does; the message says what came."""


async def engine_answers(socket_path: Path) -> bool:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket_path)), PING_TIMEOUT
        )
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), PING_TIMEOUT)
        return status_line.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def engine_info(sock: socket.socket) -> dict[str, Any]:
    """The engine's ``/info`` (version, storage driver ...), asked on a connected socket
    to its API (which this closes)."""
    reader, writer = await asyncio.open_connection(sock=sock)  # any stream: unix, tcp, vsock
    try:
        writer.write(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
        await writer.drain()
        answer = b""
        async with asyncio.timeout(PING_TIMEOUT):
            while len(answer) < INFO_LIMIT and (chunk := await reader.read(65536)):
                answer += chunk
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if status_line.split(" ")[1:2] != ["200"]:
        said = f": {body.decode(errors='replace').strip()}" if body else ""
        raise EngineAnswerError(f"the engine answered /info with {status_line!r}{said}")
    try:
        info = json.loads(body)
    except ValueError:
        raise EngineAnswerError("the engine's /info is not JSON") from None
    if not isinstance(info, dict):
        raise EngineAnswerError("the engine's /info is not a JSON object")
    return info


def engine_answers_sync(socket_path: Path) -> bool:
    """``engine_answers`` for callers without an event loop."""
    return asyncio.run(engine_answers(socket_path))
