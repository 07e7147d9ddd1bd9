"""``hostnet vm install-agent`` against a real sshd standing in for a VM, then a mirror through
the agent it installed.

The "VM" is a fresh network namespace with its own mount namespace, where /etc and /usr/lib
are overlays on temporary folders (so the install writes nothing on this machine) and /run is
empty (no systemd there: install-agent starts the agent detached). ssh reaches that sshd
through a ProxyCommand into the namespace. The agent listens on a unix socket, which the
daemon on the host reaches because /tmp is shared.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from installer.build import build_agent_package
from tests.integration.daemon_fixture import HOSTNET, assert_vm_port_mirrored, start_daemon
from tests.integration.vm_helpers import free_port, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and sshd need root"),
    pytest.mark.skipif(shutil.which("/usr/sbin/sshd") is None, reason="needs openssh-server"),
]

VM_SETUP = r"""
set -e
w=$1
mkdir -p "$w/etc-up" "$w/etc-work" "$w/lib-up" "$w/lib-work"
mount -t overlay vm-etc -o "lowerdir=/etc,upperdir=$w/etc-up,workdir=$w/etc-work" /etc
mount -t overlay vm-lib -o "lowerdir=/usr/lib,upperdir=$w/lib-up,workdir=$w/lib-work" /usr/lib
mount -t tmpfs vm-run /run
mkdir -p /run/sshd
ip link set lo up
exec /usr/sbin/sshd -D -e -f "$w/sshd_config"
"""


@dataclass
class SshVm:
    namespace: str
    work: Path
    key: Path
    sshd: subprocess.Popen[str]

    def ssh_options(self) -> list[str]:
        proxy = f"ip netns exec {self.namespace} socat - TCP:127.0.0.1:22"
        options = [
            f"ProxyCommand={proxy}",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
        ]
        return [arg for option in options for arg in ("-o", option)]


@pytest.fixture
def ssh_vm(tmp_path: Path) -> Iterator[SshVm]:
    work = tmp_path / "vm"
    work.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key")], check=True
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client_key")], check=True
    )
    shutil.copy(work / "client_key.pub", work / "authorized_keys")
    (work / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort 22\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"StrictModes no\nUsePAM no\nPidFile {work / 'sshd.pid'}\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n"
    )
    namespace = f"hn-install-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    sshd = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            "unshare",
            "--mount",
            "sh",
            "-c",
            VM_SETUP,
            "sh",
            str(work),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    vm = SshVm(namespace, work, work / "client_key", sshd)
    try:
        probe = ["ssh", "-o", "BatchMode=yes", "-i", str(vm.key), *vm.ssh_options(), "root@vm"]

        def sshd_up() -> bool:
            if sshd.poll() is not None:
                out = sshd.stdout.read() if sshd.stdout else ""
                raise AssertionError(f"sshd exited with {sshd.returncode}: {out}")
            return subprocess.run([*probe, "true"], capture_output=True, timeout=10).returncode == 0

        wait_for(sshd_up, 15, "sshd in the namespace")
        yield vm
    finally:
        pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        sshd.wait(10)
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def test_install_agent_over_ssh_then_mirror(ssh_vm: SshVm, tmp_path: Path) -> None:
    agent_dir = build_agent_package(tmp_path / "build")
    home = tmp_path / "home"
    secret_file = tmp_path / "vm.secret"
    sock = tmp_path / "agent.sock"
    env = {**os.environ, "HOSTNET_HOME": str(home)}
    argv = [HOSTNET, "vm", "install-agent", "--ssh", "root@vm", "-i", str(ssh_vm.key)]
    argv += ssh_vm.ssh_options()
    argv += ["--listen", f"unix:{sock}", "--secret-file", str(secret_file)]
    argv += ["--agent-dir", str(agent_dir)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "detached" in result.stdout  # no systemd in this "VM"

    # what landed in the VM: the zipapp, the secret (0600, the host's), the listen address
    etc = ssh_vm.work / "etc-up" / "hostnet"
    secret_in_vm = etc / "agent.secret"
    assert stat.S_IMODE(secret_in_vm.stat().st_mode) == 0o600
    assert secret_in_vm.read_bytes() == secret_file.read_bytes()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert (
        etc / "agent.env"
    ).read_text() == f"HOSTNET_AGENT_LISTEN={shlex.quote(f'unix:{sock}')}\n"
    zipapp = ssh_vm.work / "lib-up" / "hostnet" / "hostnet-agent.pyz"
    assert zipapp.read_bytes() == (agent_dir / "hostnet-agent.pyz").read_bytes()

    # the printed VmOptions work as they are
    line = next(ln for ln in result.stdout.splitlines() if "settings set VmOptions" in ln)
    options = json.loads(shlex.split(line)[-1])
    assert options == {"transport": f"unix:{sock}", "secret_file": str(secret_file)}
    settings = {"HostNetworkingEnabled": True, "VmBackend": "attach", "VmOptions": options}
    daemon = start_daemon(home, settings)
    try:
        assert_vm_port_mirrored(daemon, ["ip", "netns", "exec", ssh_vm.namespace], b"installed")
    finally:
        daemon.stop()


def test_install_agent_unreachable_vm_fails_clearly(tmp_path: Path) -> None:
    agent_dir = build_agent_package(tmp_path / "build")
    env = {**os.environ, "HOSTNET_HOME": str(tmp_path / "home")}
    port = free_port("tcp")  # nothing listens there
    argv = [HOSTNET, "vm", "install-agent", "--ssh", "root@127.0.0.1", "-p", str(port)]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    argv += ["--listen", "vsock:ANY:5123", "--agent-dir", str(agent_dir)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "hostnet vm install-agent: ssh failed on root@127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


def test_install_agent_bad_listen_address(tmp_path: Path) -> None:
    env = {**os.environ, "HOSTNET_HOME": str(tmp_path / "home")}
    argv = [HOSTNET, "vm", "install-agent", "--ssh", "root@vm", "--listen", "udp:1.2.3.4:5"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "--listen" in result.stderr and "Traceback" not in result.stderr
