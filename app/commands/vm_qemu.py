"""``hostnet vm up --backend qemu`` and the QEMU side of ``vm exec`` / ``vm down``.

A QEMU VM lives as long as the process that started it (no orphan VMs), so the daemon owns
it: ``vm up --backend qemu`` sets ``VmBackend`` to ``qemu``, starts the daemon when none
runs, and waits until the VM is up. ``vm exec`` then goes through the daemon to the agent
inside; ``vm down`` stops the daemon, which powers the VM off (and kills QEMU after a
timeout), and kills a QEMU left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from typing import Any

from app.control_client import ControlClient, ControlError, DaemonUnavailable
from app.paths import Paths, user_paths
from app.settings import SettingsStore

UP_TIMEOUT = 240.0  # a first boot builds the image (apt download) and may run under TCG
EXEC_TIMEOUT = 20.0
DOWN_TIMEOUT = 40.0


def _client(paths: Paths, timeout: float = 10.0) -> ControlClient:
    return ControlClient(paths.control_socket, timeout=timeout)


def daemon_status(paths: Paths) -> dict[str, Any] | None:
    try:
        status = _client(paths, 3.0).get("/v1/status")
    except (DaemonUnavailable, ControlError, OSError):
        return None
    return dict(status)


def run_qemu_up(args: argparse.Namespace) -> int:
    paths = user_paths()
    paths.ensure()
    status = daemon_status(paths)
    if status is not None and status["vm"]["backend"] != "qemu":
        print(
            f"hostnet vm up: the running daemon uses the {status['vm']['backend']} backend; "
            "stop it first with `hostnet vm down`, then run this again",
            file=sys.stderr,
        )
        return 1
    if status is None:
        SettingsStore(paths).set("VmBackend", "qemu")
        from app.gui.daemon_start import spawn_daemon  # no Qt: the detached daemon starter

        proc = spawn_daemon(paths)
        print(f"started the daemon (pid {proc.pid}); booting the VM...", flush=True)
    console = paths.vm_dir / "qemu" / "console.log"
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        status = daemon_status(paths)
        if status is not None:
            vm = status["vm"]
            forwarding = status["state"] == "on"  # then the daemon keeps an agent link
            if vm["state"] == "up" and (not forwarding or status["agent"]["state"] == "connected"):
                print(f"VM up (qemu); console log {console}")
                return 0
            if vm["state"] == "error":
                print(f"hostnet vm up: the VM failed: {vm['detail']}", file=sys.stderr)
                return 1
        time.sleep(0.5)
    print(
        f"hostnet vm up: the VM was not up after {UP_TIMEOUT:.0f}s; see {console} and "
        f"{paths.daemon_log}",
        file=sys.stderr,
    )
    return 1


def exec_through_agent(paths: Paths, command: list[str], detach: bool) -> int:
    """Run ``command`` in the VM through the daemon and its agent; the command's exit status."""
    body: dict[str, Any] = {"argv": command, "detach": detach}
    result = _client(paths, EXEC_TIMEOUT).call("POST", "/v1/vm/exec", body)
    if detach:
        print(f"started in the VM: pid {result['pid']}, output in {result['log']} (in the VM)")
        return 0
    sys.stdout.write(result.get("stdout", ""))
    sys.stderr.write(result.get("stderr", ""))
    code = result.get("exit")
    return 124 if code is None else (128 - code if code < 0 else int(code))


def stop_qemu(paths: Paths) -> None:
    """Stop the daemon (it powers the VM off); kill a QEMU that outlived it."""
    with contextlib.suppress(DaemonUnavailable, ControlError, OSError):
        _client(paths).call("POST", "/v1/shutdown")
        deadline = time.monotonic() + DOWN_TIMEOUT
        # The daemon removes its pid file last, after the VM is down.
        while paths.daemon_pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    pid_file = paths.vm_dir / "qemu" / "qemu.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if _is_qemu(pid):
            os.kill(pid, signal.SIGKILL)
            print(f"killed QEMU (pid {pid}), which did not power off", file=sys.stderr)
    with contextlib.suppress(OSError):
        pid_file.unlink()


def _is_qemu(pid: int) -> bool:
    try:
        return b"qemu" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False
