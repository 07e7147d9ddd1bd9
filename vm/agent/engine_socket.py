"""The VM's own container engine, reached by the agent for the daemon (the attach backend).

The daemon asks with an ``OpenEngine`` stream (proxy/wire/messages.py), which names no
path. The agent connects it only to the engine's API socket: the first of its
``engine_sockets`` that answers, by default Docker's usual ``/var/run/docker.sock`` and
``/run/docker.sock``, or what the VM's owner gave the agent with ``--engine-socket``. It
never connects a unix path the daemon names: the agent is not a general proxy into the
VM's sockets, any more than into its network (vm/transport/targets.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from pathlib import Path

from proxy.wire import ErrorCode
from vm.transport.targets import CONNECT_TIMEOUT, TargetError

ENGINE_SOCKETS = (Path("/var/run/docker.sock"), Path("/run/docker.sock"))
"""Where a Docker Engine listens in a VM that runs one (its ``-H unix://`` default)."""

NO_ENGINE = "no Docker Engine in this VM"
"""How a refusal because nothing answers at the engine's paths begins (the daemon shows it)."""


async def connect_engine(paths: Sequence[Path] = ENGINE_SOCKETS) -> socket.socket:
    """A connected, non-blocking socket to the VM's engine, or TargetError saying why."""
    loop = asyncio.get_running_loop()
    tried: list[str] = []
    for path in paths:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, str(path))
        except (OSError, TimeoutError) as exc:
            sock.close()
            tried.append(f"{path}: {getattr(exc, 'strerror', None) or 'no answer in time'}")
            continue
        return sock
    raise TargetError(
        ErrorCode.NOT_LISTENING,
        f"{NO_ENGINE}: nothing answers at {'; '.join(tried)} (start dockerd in the VM, "
        "or give the agent --engine-socket PATH)",
    )
