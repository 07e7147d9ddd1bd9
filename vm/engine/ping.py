"""Whether a Docker Engine answers on a unix socket (its ``/_ping`` endpoint)."""

from __future__ import annotations

import asyncio
from pathlib import Path

PING_TIMEOUT = 2.0


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
