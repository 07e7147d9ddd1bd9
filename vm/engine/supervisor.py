"""Keeps dockerd (and the engine's DNS) running in the namespace VM, as the daemon keeps the agent.

A crash is shown (state ``restarting`` with the exit status and the log's path) and started
again after a back-off. overlay2 is tried first; if dockerd refuses it on this filesystem,
vfs is used and the state says so. A dockerd left running by an earlier daemon for the same
data is adopted, so a daemon restart does not stop containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from vm.backends.netns import pid_alive
from vm.engine.dockerd_command import (
    STORAGE_DRIVERS,
    DockerdOptions,
    dockerd_command,
    in_vm,
    storage_driver_refused,
)
from vm.engine.layout import EngineLayout
from vm.engine.mounts import release_mounts
from vm.engine.ping import engine_answers
from vm.engine.process_stop import terminate
from vm.engine.state import EngineState, EngineStatus

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
"""dockerd stops its containers first (10 s each by default, in parallel)."""
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
"""A dockerd that ran this long before it stopped starts again at once."""
POLL = 0.5
PYTHON_M = (sys.executable, "-m")


@dataclass(frozen=True)
class EngineTarget:
    """Where the engine runs: a network namespace the daemon may enter, and the VM address
    that is both containers' host gateway and their DNS server."""

    netns_path: str
    gateway: str

    def supervisor(
        self, layout: EngineLayout, on_change: Callable[[EngineStatus], None]
    ) -> EngineSupervisor:
        return EngineSupervisor(layout, self, on_change)


class EngineRefused(RuntimeError):
    """dockerd would not start; the message says why."""


class EngineSupervisor:
    """Supervises dockerd in a namespace VM; a subclass runs it elsewhere (in a guest) by
    overriding the process hooks (``_prepare``, ``_launch``, ``_alive`` ...)."""

    def __init__(
        self,
        layout: EngineLayout,
        target: object,
        on_change: Callable[[EngineStatus], None] = lambda status: None,
        log_file: Path | None = None,
    ) -> None:
        self.layout = layout
        self.target = target
        self.log_file = log_file or layout.log_file
        """Where dockerd's log is (the status names it)."""
        self.on_change = on_change
        self.status = EngineStatus(EngineState.STARTING, docker_host=layout.docker_host)
        self._driver_index = 0
        self._driver_note = ""
        self._task: asyncio.Task[None] | None = None
        self._dockerd: asyncio.subprocess.Process | None = None
        self._adopted_pid = 0
        self._dns: asyncio.subprocess.Process | None = None
        self._stopping = False

    # -- the daemon's side ----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        """Stop dockerd (which stops its containers) and the DNS server."""
        self._stopping = True
        self._set(EngineState.STOPPING, "")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stop_dockerd()
        await terminate(self._dns, 2.0)
        self._set(EngineState.OFF, "")

    # -- supervision ----------------------------------------------------------------------

    def _set(self, state: EngineState, detail: str, **changes: object) -> None:
        self.status = replace(self.status, state=state, detail=detail, **changes)  # type: ignore[arg-type]
        self.on_change(self.status)

    async def _supervise(self) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._prepare()
                await self._run_once()
                detail = await self._watch()
            except EngineRefused as exc:
                detail = str(exc)
            except OSError as exc:
                detail = f"cannot start the engine: {exc}"
            if not self._alive():
                self._release_mounts()
            failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
            delay = min(BACKOFF_MAX, 0.5 * 2 ** (failures - 1)) if failures else 0.0
            log.warning("engine: %s; starting again in %.1f s", detail, delay)
            self._set(
                EngineState.RESTARTING,
                f"{detail}; starting again (log: {self.log_file})",
                restarts=self.status.restarts + 1,
                pid=0,
            )
            await asyncio.sleep(delay)

    async def _prepare(self) -> None:
        """The folders, the host gateway's rules and the DNS server, before dockerd."""
        assert isinstance(self.target, EngineTarget)
        self.layout.ensure()
        gateway = self.target.gateway
        await _run(in_vm(self.target.netns_path, [*PYTHON_M, "vm.engine.host_gateway", gateway]))
        if self._dns is None or self._dns.returncode is not None:
            _stop_stale(self.layout.dns_pidfile, b"vm.engine.dns")
            dns = [*PYTHON_M, "vm.engine.dns", "--listen", gateway, "--gateway", gateway]
            self._dns = await _spawn(in_vm(self.target.netns_path, dns), self.layout.dns_log)
            self.layout.dns_pidfile.write_text(f"{self._dns.pid}\n")

    async def _launch(self, driver: str) -> bool:
        """Start dockerd with ``driver``, or adopt a running one (then True)."""
        assert isinstance(self.target, EngineTarget)
        adopted = _running_dockerd(self.layout)
        if adopted:
            self._adopted_pid = adopted
            self._set(EngineState.STARTING, f"adopting the running dockerd (pid {adopted})")
            return True
        self._adopted_pid = 0
        options = DockerdOptions(driver, self.target.gateway, self.target.gateway)
        self._dockerd = await _spawn(
            dockerd_command(self.layout, self.target.netns_path, options), self.log_file
        )
        return False

    async def _run_once(self) -> None:
        """Start dockerd (or adopt a running one) and wait until its API answers."""
        driver = STORAGE_DRIVERS[self._driver_index]
        self._set(EngineState.STARTING, self._driver_note, storage_driver=driver)
        log_start = _size(self.log_file)
        adopted = await self._launch(driver)
        deadline = time.monotonic() + READY_TIMEOUT
        while not await engine_answers(self.layout.api_socket):
            if not self._alive():
                if not adopted:
                    self._check_storage_refusal(_tail(self.log_file, log_start))
                raise EngineRefused(f"dockerd exited while starting ({self._exit_text()})")
            if time.monotonic() > deadline:
                await self._stop_dockerd()
                raise EngineRefused(f"dockerd did not answer in {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)
        # The runtime folder is private already (0700); the socket is the user's alone too.
        os.chmod(self.layout.api_socket, 0o600)
        os.chown(self.layout.api_socket, os.getuid(), os.getgid())
        self._set(EngineState.RUNNING, self._driver_note, pid=self._pid())

    def _check_storage_refusal(self, log_text: str) -> None:
        driver = STORAGE_DRIVERS[self._driver_index]
        if self._driver_index + 1 < len(STORAGE_DRIVERS) and storage_driver_refused(
            log_text, driver
        ):
            self._driver_index += 1
            fallback = STORAGE_DRIVERS[self._driver_index]
            self._driver_note = f"{driver} was refused on this filesystem; using {fallback}"
            raise EngineRefused(self._driver_note)

    async def _watch(self) -> str:
        """Wait until dockerd stops; restart the DNS server whenever it stops."""
        while True:
            if not self._alive():
                return f"dockerd stopped ({self._exit_text()})"
            if self._dns is not None and self._dns.returncode is not None:
                log.warning("engine DNS exited with %s; starting it again", self._dns.returncode)
                await self._prepare()
            await asyncio.sleep(POLL)

    # -- processes ------------------------------------------------------------------------

    def _alive(self) -> bool:
        if self._adopted_pid:
            return pid_alive(self._adopted_pid)
        return self._dockerd is not None and self._dockerd.returncode is None

    def _pid(self) -> int:
        if self._adopted_pid:
            return self._adopted_pid
        return self._dockerd.pid if self._dockerd is not None else 0

    def _exit_text(self) -> str:
        if self._dockerd is not None and self._dockerd.returncode is not None:
            code = self._dockerd.returncode
            return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return "exited"

    async def _stop_dockerd(self) -> None:
        if self._adopted_pid:
            pid, self._adopted_pid = self._adopted_pid, 0
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while pid_alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await terminate(self._dockerd, STOP_TIMEOUT)
        self._release_mounts()

    def _release_mounts(self) -> None:
        for problem in release_mounts(self.layout.state_dir):
            log.warning("engine: cannot unmount %s", problem)


async def _spawn(command: list[str], log_file: Path) -> asyncio.subprocess.Process:
    with open(log_file, "ab") as log_out:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_out,
            stderr=log_out,
            start_new_session=True,
            cwd="/",
        )


async def _run(command: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd="/",
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        text = output.decode(errors="replace").strip()
        raise EngineRefused(text or f"{' '.join(command)} exited with status {proc.returncode}")


def _running_dockerd(layout: EngineLayout) -> int:
    """The pid of a dockerd already serving this data root, or 0."""
    try:
        pid = int(layout.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return 0
    if cmdline and cmdline[0].endswith(b"dockerd") and str(layout.data_root).encode() in cmdline:
        return pid if pid_alive(pid) else 0
    return 0


def _stop_stale(pidfile: Path, marker: bytes) -> None:
    """Stop a process an earlier daemon left (its pid in ``pidfile``, ``marker`` in its
    command line), so that a new one can take its address."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if marker in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, start: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
