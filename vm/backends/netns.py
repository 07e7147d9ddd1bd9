"""The ``netns`` backend: a Linux network namespace as the VM, the agent running inside.

As root, a named namespace (``ip netns``) with a veth pair to the host and loopback up,
made with pyroute2. Without root, an unnamed user+network namespace made by
``unshare --user --net --map-root-user`` around the agent, which brings loopback up itself.
Either way the agent listens on a unix socket in the VM folder, which the daemon reaches
directly: host and VM share a kernel, so connected sockets are handed over (SCM_RIGHTS).

The state file records the namespace and the agent's pid so that ``vm exec``, ``vm down``
and a restarted daemon find the VM, and a namespace left by a crash is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from proxy.nat.kernel_path import remove_host_table
from proxy.wire import load_or_create_secret
from vm.backends.errors import VMError

AGENT_START_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0
VETH_SPACE = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544 benchmarking range
ULA_PREFIX = "fd68:6e65:7400"


@dataclass
class NetnsState:
    name: str
    rootless: bool
    agent_pid: int
    host_ip: str = ""
    vm_ip: str = ""
    host_ip6: str = ""
    vm_ip6: str = ""
    host_if: str = ""


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


class NetnsVM:
    """One namespace VM, kept in ``vm_dir`` (``HOSTNET_HOME/state/vm``)."""

    def __init__(self, vm_dir: Path, *, rootless: bool | None = None) -> None:
        self.vm_dir = vm_dir
        self.rootless = os.geteuid() != 0 if rootless is None else rootless
        digest = hashlib.sha256(str(vm_dir.resolve()).encode()).hexdigest()
        self.name = f"hostnet-{digest[:8]}"
        self._slot = int(digest[8:16], 16) % (VETH_SPACE.num_addresses // 4)
        self.host_if = f"hn{digest[:8]}h"
        self.vm_if = f"hn{digest[:8]}v"

    # -- files ----------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.vm_dir / "netns.json"

    @property
    def agent_socket(self) -> Path:
        return self.vm_dir / "agent.sock"

    @property
    def secret_file(self) -> Path:
        return self.vm_dir / "secret"

    @property
    def agent_log(self) -> Path:
        return self.vm_dir / "agent.log"

    @property
    def transport(self) -> str:
        return f"unix:{self.agent_socket}"

    def secret(self) -> bytes:
        self.vm_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return load_or_create_secret(self.secret_file)

    def read_state(self) -> NetnsState | None:
        try:
            return NetnsState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write_state(self, state: NetnsState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, self.state_file)

    # -- status ---------------------------------------------------------------------------

    def is_up(self) -> bool:
        state = self.read_state()
        return state is not None and pid_alive(state.agent_pid)

    def addresses(self) -> dict[str, str]:
        base = int(VETH_SPACE.network_address) + 4 * self._slot
        return {
            "host_ip": str(ipaddress.ip_address(base + 1)),
            "vm_ip": str(ipaddress.ip_address(base + 2)),
            "host_ip6": f"{ULA_PREFIX}:{self._slot:x}::1",
            "vm_ip6": f"{ULA_PREFIX}:{self._slot:x}::2",
        }

    # -- up -------------------------------------------------------------------------------

    def up(self) -> NetnsState:
        """Make the namespace and start the agent in it; reuse a VM whose agent still runs."""
        state = self.read_state()
        if state is not None and pid_alive(state.agent_pid):
            return state
        self.clean_stale()
        self.secret()
        if self.rootless:
            return self._up_rootless()
        return self._up_root()

    def _up_root(self) -> NetnsState:
        addrs = self.addresses()
        options = [f"--{key.replace('_', '-')}={value}" for key, value in addrs.items()]
        result = self._setup("create", self.name, self.host_if, self.vm_if, *options)
        if result.returncode != 0:
            self._remove_namespace()
            raise VMError(f"cannot create network namespace {self.name}: {result.stderr.strip()}")
        command = ["ip", "netns", "exec", self.name, *self._agent_command()]
        pid = self._start_agent(command)
        state = NetnsState(self.name, False, pid, host_if=self.host_if, **addrs)
        self._write_state(state)
        return state

    def _up_rootless(self) -> NetnsState:
        if shutil.which("unshare") is None:
            raise VMError("the netns backend without root needs unshare(1): install util-linux")
        command = [
            "unshare",
            "--user",
            "--net",
            "--map-root-user",
            "--kill-child",
            *self._agent_command(),
            "--loopback-up",
        ]
        pid = self._start_agent(command)
        state = NetnsState(self.name, True, pid)
        self._write_state(state)
        return state

    def _agent_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vm.agent",
            "--listen",
            self.transport,
            "--secret-file",
            str(self.secret_file),
            "--ready-file",
            str(self.vm_dir / "agent.ready"),
        ]

    def _start_agent(self, command: list[str]) -> int:
        ready = self.vm_dir / "agent.ready"
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        with open(self.agent_log, "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd="/",
            )
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        while not ready.exists():
            if proc.poll() is not None:
                self._remove_namespace()
                raise VMError(
                    f"the agent exited with status {proc.returncode} while starting; "
                    f"see {self.agent_log}"
                )
            if time.monotonic() > deadline:
                proc.kill()
                self._remove_namespace()
                raise VMError(
                    f"the agent did not start in {AGENT_START_TIMEOUT:.0f} s; see {self.agent_log}"
                )
            time.sleep(0.01)
        return proc.pid

    def restart_agent(self) -> NetnsState:
        """Start the agent again in the existing namespace (after it died)."""
        state = self.read_state()
        if state is None or state.rootless or not self._namespace_exists():
            self.down()
            return self.up()
        state.agent_pid = self._start_agent(
            ["ip", "netns", "exec", self.name, *self._agent_command()]
        )
        self._write_state(state)
        return state

    # -- exec -----------------------------------------------------------------------------

    def exec_command(self, command: list[str]) -> list[str]:
        """The command line that runs ``command`` inside the VM."""
        state = self.read_state()
        if state is None or not pid_alive(state.agent_pid):
            raise VMError(
                "the VM is not running: start it with `hostnet vm up` or `hostnet daemon`"
            )
        if state.rootless:
            return [
                "nsenter",
                "-t",
                str(state.agent_pid),
                "-U",
                "-n",
                "--preserve-credentials",
                *command,
            ]
        return ["ip", "netns", "exec", state.name, *command]

    # -- down -----------------------------------------------------------------------------

    def down(self) -> None:
        state = self.read_state()
        if state is not None and pid_alive(state.agent_pid):
            agent = state.agent_pid
            if state.rootless:
                # unshare(1) ignores SIGTERM; killing it delivers --kill-child's SIGTERM to
                # the agent, which then stops cleanly.
                children = _children(agent)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent, signal.SIGKILL)
                agent = children[0] if children else agent
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while pid_alive(agent) and time.monotonic() < deadline:
                time.sleep(0.01)
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent, signal.SIGKILL)
        self.clean_stale()

    def clean_stale(self) -> None:
        """Remove what a crashed daemon or agent left: processes, namespace, files."""
        if not self.rootless and self._namespace_exists():
            for pid in self._namespace_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._remove_namespace()
        if not self.rootless:
            remove_host_table(self.host_if)  # the kernel path's rules for this VM's link
        for path in (self.state_file, self.agent_socket, self.vm_dir / "agent.ready"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _namespace_exists(self) -> bool:
        return Path("/run/netns", self.name).exists()

    def _namespace_pids(self) -> list[int]:
        result = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        return [int(p) for p in result.stdout.split() if p.isdigit()]

    def _remove_namespace(self) -> None:
        if self.rootless or not self._namespace_exists():
            return
        self._setup("remove", self.name)

    @staticmethod
    def _setup(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vm.backends.netns_setup", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
