"""Every ``hostnet`` command ends quietly when the reader of its output has gone away
(``hostnet status | head -3``): no traceback, and the status a shell shows for SIGPIPE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import start_daemon

HOSTNET = str(Path(sys.executable).with_name("hostnet"))
CLOSED_PIPE_STATUS = 141  # 128 + SIGPIPE, as bash reports `yes | head -1`


def run_into_finished_head(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Run ``hostnet ARGS`` with its stdout on a pipe whose reader, ``head -n 1``, has
    already read its line and exited: every write hostnet makes meets a closed pipe."""
    read_end, write_end = os.pipe()
    head = subprocess.Popen(["head", "-n", "1"], stdin=read_end, stdout=subprocess.PIPE)
    os.close(read_end)  # head holds the only reading end now
    try:
        os.write(write_end, b"first line\n")
        head_out, _ = head.communicate(timeout=10)
        assert head.returncode == 0
        result = subprocess.run(
            [HOSTNET, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env if env is not None else os.environ.copy(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    return result, head_out


def assert_quiet_end(
    result: subprocess.CompletedProcess[bytes], statuses: tuple[int, ...] = (CLOSED_PIPE_STATUS,)
) -> None:
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert "Exception ignored" not in stderr
    assert result.returncode in statuses, stderr


@pytest.mark.parametrize(
    "args",
    [
        ["status"],  # no daemon: "hostnet: stopped: ..." on stdout
        ["status", "--json"],
        ["settings", "list"],
        ["settings", "list", "--json"],
        ["settings", "get", "VmBackend"],
    ],
    ids=" ".join,
)
def test_command_into_closed_pipe_ends_quietly(hostnet_home: Path, args: list[str]) -> None:
    result, head_out = run_into_finished_head(args)
    assert head_out == b"first line\n"
    assert_quiet_end(result)


@pytest.mark.parametrize("args", [["--help"], ["vm", "--help"], ["--version"]], ids=" ".join)
def test_help_into_closed_pipe_ends_quietly(hostnet_home: Path, args: list[str]) -> None:
    """argparse drops its own failed writes and exits 0; what matters is the quiet end."""
    result, _ = run_into_finished_head(args)
    assert_quiet_end(result, (0, CLOSED_PIPE_STATUS))


def test_error_on_stderr_is_unchanged_by_the_pipe_handling(hostnet_home: Path) -> None:
    """A command whose answer is an error on stderr keeps its own status and message."""
    result, _ = run_into_finished_head(["ports"])  # no daemon: an error, nothing on stdout
    assert result.returncode == 1
    assert b"no hostnet daemon is running" in result.stderr
    assert b"Traceback" not in result.stderr


def test_status_piped_into_head_by_a_shell(hostnet_home: Path) -> None:
    """The user's own line, through a real shell: head takes what it wants, no traceback."""
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {HOSTNET} settings list | head -n 0"],
        capture_output=True,
        env=os.environ.copy(),
        timeout=60,
    )
    assert result.stdout == b""
    assert b"Traceback" not in result.stderr
    assert b"BrokenPipe" not in result.stderr
    assert result.returncode in (0, CLOSED_PIPE_STATUS)  # 0 when all was written first


@pytest.mark.skipif(os.geteuid() != 0, reason="the daemon's namespace VM needs root")
def test_status_and_ports_of_a_running_daemon_into_closed_pipe(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "home", {"HostNetworkingEnabled": False})
    try:
        for args in (["status"], ["status", "--json"], ["ports", "--json"]):
            result, _ = run_into_finished_head(args, daemon.env)
            assert_quiet_end(result)
    finally:
        daemon.stop()
