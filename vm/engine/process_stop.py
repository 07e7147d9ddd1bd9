"""Stopping a child process the way dockerd wants it: SIGTERM (it stops its containers), then
SIGKILL if it is not gone within a timeout. Stdlib only: the guest's engine helper uses it too."""

from __future__ import annotations

import asyncio
import contextlib


async def terminate(proc: asyncio.subprocess.Process | None, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; nothing for a process gone."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
