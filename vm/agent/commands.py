"""Commands the daemon runs in the VM through the agent (``hostnet vm exec`` on a real VM).

``exec`` runs a command to completion (bounded time, bounded output) or, detached, starts it
in the background and returns its pid; ``kill`` signals a process the agent started. The
agent runs as root in the VM: only the authenticated daemon can ask, as for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from proxy.errors import HostnetError
from proxy.wire.bounded_json import JsonValue

MAX_OUTPUT = 32 * 1024  # per stream, so a Response stays well inside a control frame
DEFAULT_TIMEOUT = 8.0  # the daemon waits 10 s for any answer
DETACHED_LOG_DIR = "/tmp"


class CommandError(HostnetError, ValueError):
    """A request the agent will not run; the message says what to send instead."""


def _argv(params: dict[str, JsonValue]) -> list[str]:
    argv = params.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise CommandError('exec needs "argv": a non-empty list of strings')
    return [str(a) for a in argv]


def _text(data: bytes) -> str:
    text = data[:MAX_OUTPUT].decode("utf-8", "replace")
    return text + ("\n[output cut at 32 KiB]" if len(data) > MAX_OUTPUT else "")


class Commands:
    """Runs commands for the daemon and remembers the detached ones until they exit."""

    def __init__(self) -> None:
        self.detached: dict[int, asyncio.subprocess.Process] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    async def exec(self, params: dict[str, JsonValue]) -> dict[str, Any]:
        argv = _argv(params)
        cwd = params.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise CommandError('"cwd" must be a path')
        if params.get("detach"):
            return await self._detach(argv, cwd)
        timeout = params.get("timeout", DEFAULT_TIMEOUT)
        if not isinstance(timeout, int | float) or not 0 < timeout <= DEFAULT_TIMEOUT:
            raise CommandError(f'"timeout" must be 0..{DEFAULT_TIMEOUT:.0f} seconds; detach longer')
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(f"cannot run {argv[0]!r} in the VM: {exc.strerror}") from None
        try:
            async with asyncio.timeout(float(timeout)):
                out, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = await proc.communicate()
            return {
                "exit": None,
                "timed_out": True,
                "stdout": _text(out),
                "stderr": _text(err) + f"\n[killed after {timeout}s; use --detach]",
            }
        return {"exit": proc.returncode, "stdout": _text(out), "stderr": _text(err)}

    async def _detach(self, argv: list[str], cwd: str | None) -> dict[str, Any]:
        log_path = os.path.join(DETACHED_LOG_DIR, f"hostnet-exec-{os.getpid()}-{id(argv)}.log")
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(f"cannot run {argv[0]!r} in the VM: {exc.strerror}") from None
        finally:
            os.close(fd)
        final = os.path.join(DETACHED_LOG_DIR, f"hostnet-exec-{proc.pid}.log")
        with contextlib.suppress(OSError):
            os.rename(log_path, final)
        self.detached[proc.pid] = proc
        task = asyncio.get_running_loop().create_task(self._reap(proc))
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)
        return {"pid": proc.pid, "log": final}

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        self.detached.pop(proc.pid, None)

    def kill(self, params: dict[str, JsonValue]) -> dict[str, Any]:
        pid = params.get("pid")
        sig = params.get("signal", "TERM")
        if not isinstance(pid, int) or pid not in self.detached:
            running = sorted(self.detached) or "none"
            raise CommandError(f"pid {pid!r} is not a detached command of the agent ({running})")
        try:
            signum = signal.Signals[f"SIG{sig}"] if isinstance(sig, str) else signal.Signals(sig)
        except (KeyError, ValueError):
            raise CommandError(f"unknown signal {sig!r}: use a name like TERM or KILL") from None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)
        return {"pid": pid, "signal": signum.name}

    async def close(self) -> None:
        for pid in list(self.detached):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        for task in list(self._reapers):
            task.cancel()
        await asyncio.gather(*self._reapers, return_exceptions=True)
