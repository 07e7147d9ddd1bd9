"""A minimal QMP (QEMU Machine Protocol) client over a unix socket, on asyncio.

Enough for control: connect, negotiate capabilities, run a command, read its answer.
Asynchronous events that arrive meanwhile are kept in ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from vm.backends.errors import VMError


class QMPError(VMError):
    """QMP refused a command, or the monitor is not reachable."""


class QMPClient:
    """One connection to QEMU's QMP monitor."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.events: list[dict[str, Any]] = []
        self.greeting: dict[str, Any] = {}

    @classmethod
    async def connect(cls, path: Path, timeout: float = 5.0) -> QMPClient:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path)), timeout
            )
        except (OSError, TimeoutError) as e:
            raise QMPError(f"cannot reach QEMU's monitor at {path}: {e}") from e
        client = cls(reader, writer)
        try:
            client.greeting = await asyncio.wait_for(client._read(), timeout)
            await asyncio.wait_for(client.execute("qmp_capabilities"), timeout)
        except BaseException:
            await client.close()
            raise
        return client

    async def _read(self) -> dict[str, Any]:
        line = await self._reader.readline()
        if not line:
            raise QMPError("QEMU closed its monitor")
        message: dict[str, Any] = json.loads(line)
        return message

    async def execute(self, command: str, **arguments: Any) -> Any:
        """Run one QMP command and return its ``return`` value."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._writer.write(json.dumps(request).encode() + b"\n")
        await self._writer.drain()
        while True:
            message = await self._read()
            if "event" in message:
                self.events.append(message)
            elif "error" in message:
                error = message["error"]
                raise QMPError(f"QMP {command}: {error.get('class')}: {error.get('desc')}")
            elif "return" in message:
                return message["return"]

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()
