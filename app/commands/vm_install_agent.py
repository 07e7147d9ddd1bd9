"""``hostnet vm install-agent``: put the guest agent into an existing VM over SSH and start it.

Copies the agent zipapp, its systemd unit, the per-VM secret (0600) and the listen address
to the VM with scp, installs them as root (directly, or with ``sudo -n``), enables and
starts the unit (or, without systemd, starts the agent detached), checks it is up, and
prints the ``VmOptions`` for the ``attach`` backend.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.paths import user_paths
from proxy.addresses import AddressError
from proxy.errors import HostnetError
from proxy.wire.secret import load_or_create_secret
from vm.transport.address import TransportAddress, parse_transport

ZIPAPP = "hostnet-agent.pyz"
UNIT = "hostnet-agent.service"
VMADDR_CID_ANY = 0xFFFFFFFF
REPO = Path(__file__).resolve().parents[2]
# Where the agent package is: the .deb's copy, else a checkout's `make package` output.
AGENT_DIRS = (Path("/usr/share/hostnet/agent"), REPO / "build" / "agent")
SSH_TIMEOUT = 120

# Runs on the VM with `sh -s DIR`; DIR holds the copied files. Lines starting with
# "hostnet-install:" are read back by the host.
REMOTE_SCRIPT = r"""
set -eu
d=$1
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
trap 'rm -rf "$d"' EXIT
if ! command -v python3 >/dev/null 2>&1; then
  echo "hostnet-install: error: the VM has no python3; install python3 (3.11 or newer) there"
  exit 3
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "hostnet-install: error: the VM's python3 is $(python3 -V 2>&1); the agent needs 3.11+"
  exit 3
fi
if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
  echo "hostnet-install: error: $(id -un) is not root and cannot sudo without a password;"
  echo "hostnet-install: error: use --ssh root@HOST or allow passwordless sudo for this user"
  exit 3
fi
as_root install -d -m 0755 /usr/lib/hostnet
as_root install -m 0644 "$d/hostnet-agent.pyz" /usr/lib/hostnet/hostnet-agent.pyz
as_root install -d -m 0700 /etc/hostnet
as_root install -m 0600 "$d/agent.secret" /etc/hostnet/agent.secret
as_root install -m 0644 "$d/agent.env" /etc/hostnet/agent.env
if [ -e /dev/vsock ]; then
  cid=$(python3 -c 'import fcntl,struct
with open("/dev/vsock","rb") as f: print(struct.unpack("I",fcntl.ioctl(f,0x7b9,bytes(4)))[0])' \
    2>/dev/null || true)
  [ -n "$cid" ] && echo "hostnet-install: cid=$cid"
fi
. "$d/agent.env"
if [ -d /run/systemd/system ]; then
  as_root install -m 0644 "$d/hostnet-agent.service" /etc/systemd/system/hostnet-agent.service
  as_root systemctl daemon-reload
  as_root systemctl enable --quiet hostnet-agent.service
  as_root systemctl restart hostnet-agent.service
  sleep 1
  if ! as_root systemctl is-active --quiet hostnet-agent.service; then
    as_root journalctl -u hostnet-agent.service -n 20 --no-pager 2>&1 \
      | sed 's/^/hostnet-install: log: /'
    echo "hostnet-install: error: the hostnet-agent service did not stay up"
    exit 4
  fi
  echo "hostnet-install: started=systemd"
else
  if [ -f /run/hostnet-agent.pid ]; then
    as_root kill "$(cat /run/hostnet-agent.pid)" 2>/dev/null || true
    sleep 0.5
  fi
  as_root rm -f /run/hostnet-agent.ready
  as_root sh -c 'setsid python3 -I /usr/lib/hostnet/hostnet-agent.pyz --listen "$1" \
    --secret-file /etc/hostnet/agent.secret --ready-file /run/hostnet-agent.ready \
    </dev/null >/var/log/hostnet-agent.log 2>&1 & echo $! > /run/hostnet-agent.pid' \
    sh "$HOSTNET_AGENT_LISTEN"
  i=0
  while [ ! -f /run/hostnet-agent.ready ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! as_root kill -0 "$(cat /run/hostnet-agent.pid)" 2>/dev/null; then
      as_root tail -n 20 /var/log/hostnet-agent.log | sed 's/^/hostnet-install: log: /'
      echo "hostnet-install: error: the agent did not start (log: /var/log/hostnet-agent.log)"
      exit 4
    fi
    sleep 0.1
  done
  echo "hostnet-install: started=detached pid $(cat /run/hostnet-agent.pid)"
fi
"""


class InstallError(HostnetError):
    """Installing failed; the message names the problem and the fix."""


@dataclass(frozen=True)
class SshTarget:
    destination: str  # user@host or host
    port: int | None
    identity: str | None
    options: tuple[str, ...]

    @property
    def host(self) -> str:
        host = self.destination.rpartition("@")[2]
        return host[1:-1] if host.startswith("[") and host.endswith("]") else host

    def ssh_argv(self) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes"]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", self.identity]
        for option in self.options:
            argv += ["-o", option]
        return argv

    def scp_argv(self) -> list[str]:
        argv = ["scp", "-q", "-o", "BatchMode=yes"]
        if self.port is not None:
            argv += ["-P", str(self.port)]
        if self.identity:
            argv += ["-i", self.identity]
        for option in self.options:
            argv += ["-o", option]
        return argv


def register_install_agent(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = actions.add_parser(
        "install-agent",
        help="install and start the guest agent in an existing VM over SSH",
        description="Copy the hostnet agent into a VM over SSH, install its systemd unit, "
        "enable and start it, and print the VmOptions for the attach backend.",
    )
    parser.add_argument(
        "--ssh", required=True, metavar="USER@HOST", help="where to reach the VM with ssh"
    )
    parser.add_argument("-p", "--port", type=int, metavar="PORT", help="the VM's SSH port")
    parser.add_argument("-i", "--identity", metavar="KEY", help="SSH private key file")
    parser.add_argument(
        "-o",
        "--ssh-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra ssh/scp -o option (repeatable), e.g. ProxyJump=bastion",
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="ADDRESS",
        help="where the agent listens in the VM: vsock:ANY:PORT, tcp:0.0.0.0:PORT or unix:PATH",
    )
    parser.add_argument(
        "--secret-file",
        type=Path,
        metavar="PATH",
        help="the per-VM secret (created, mode 0600, if missing); "
        "default: attach/HOST.secret in hostnet's VM folder",
    )
    parser.add_argument(
        "--agent-dir",
        type=Path,
        metavar="DIR",
        help="folder with hostnet-agent.pyz and hostnet-agent.service "
        "(default: the installed package's, else build/agent from `make package`)",
    )
    parser.set_defaults(func=run_install_agent)


def agent_listen_address(text: str) -> TransportAddress:
    """The agent's --listen address; ``vsock:ANY:PORT`` means any CID."""
    if text.startswith("vsock:ANY:"):
        text = f"vsock:{VMADDR_CID_ANY}:{text.removeprefix('vsock:ANY:')}"
    return parse_transport(text)


def daemon_transport(listen: TransportAddress, ssh_host: str, cid: int | None) -> str:
    """The address the daemon connects to, from where the agent listens in the VM."""
    if listen.kind == "unix":
        return str(listen)
    if listen.kind == "tcp":
        wildcard = listen.host in ("0.0.0.0", "::", "")
        host = ssh_host if wildcard else listen.host
        return str(TransportAddress("tcp", host=host, port=listen.port))
    if listen.cid != VMADDR_CID_ANY:
        return str(listen)  # the agent bound its own CID
    return f"vsock:{cid if cid is not None else 'CID'}:{listen.port}"


def find_agent_dir(explicit: Path | None) -> Path:
    candidates = [explicit] if explicit else list(AGENT_DIRS)
    for folder in candidates:
        if (folder / ZIPAPP).is_file() and (folder / UNIT).is_file():
            return folder
    if explicit:
        raise InstallError(
            f"{explicit} does not hold {ZIPAPP} and {UNIT}; "
            "point --agent-dir at the folder `make package` writes (build/agent)"
        )
    raise InstallError(
        f"no agent package found (looked in {', '.join(str(c) for c in candidates)}); "
        "install the hostnet package, or run `make package` in a checkout, or pass --agent-dir"
    )


def default_secret_file(host: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host) or "vm"
    return user_paths().vm_dir / "attach" / f"{safe}.secret"


def _run(argv: list[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=SSH_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise InstallError(f"{argv[0]} is not installed; install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"{what} took over {SSH_TIMEOUT} s; is the VM reachable?") from None


def _ssh_failed(target: SshTarget, result: subprocess.CompletedProcess[str], what: str) -> str:
    detail = (result.stderr or result.stdout).strip().splitlines()
    last = detail[-1] if detail else f"exit status {result.returncode}"
    return (
        f"{what} failed on {target.destination}: {last}; check that "
        f"`{shlex.join([*target.ssh_argv(), target.destination, 'true'])}` works"
    )


def install_agent(
    target: SshTarget, listen: TransportAddress, secret: bytes, agent_dir: Path
) -> dict[str, str]:
    """Copy, install and start the agent; return what the VM reported (cid, started)."""
    made = _run(
        [*target.ssh_argv(), target.destination, "mktemp -d /tmp/hostnet-agent.XXXXXX"],
        "ssh",
    )
    if made.returncode != 0 or not made.stdout.strip():
        raise InstallError(_ssh_failed(target, made, "ssh"))
    remote_dir = made.stdout.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory(prefix="hostnet-install-") as tmp:
        local = Path(tmp)
        secret_copy = local / "agent.secret"
        secret_copy.touch(mode=0o600)
        secret_copy.write_bytes(secret)
        (local / "agent.env").write_text(f"HOSTNET_AGENT_LISTEN={shlex.quote(str(listen))}\n")
        files = [agent_dir / ZIPAPP, agent_dir / UNIT, secret_copy, local / "agent.env"]
        copied = _run(
            [*target.scp_argv(), *map(str, files), f"{target.destination}:{remote_dir}/"],
            "scp",
        )
        if copied.returncode != 0:
            raise InstallError(_ssh_failed(target, copied, "scp"))
    ran = _run(
        [*target.ssh_argv(), target.destination, "sh", "-s", shlex.quote(remote_dir)],
        "installing",
        stdin=REMOTE_SCRIPT,
    )
    report: dict[str, str] = {}
    errors = []
    for line in ran.stdout.splitlines():
        if not line.startswith("hostnet-install: "):
            continue
        body = line.removeprefix("hostnet-install: ")
        if body.startswith(("error: ", "log: ")):
            errors.append(body)
        else:
            key, _, value = body.partition("=")
            report[key] = value
    if ran.returncode != 0:
        if errors:
            raise InstallError("\n".join(errors))
        raise InstallError(_ssh_failed(target, ran, "installing the agent"))
    return report


def run_install_agent(args: argparse.Namespace) -> int:
    target = SshTarget(args.ssh, args.port, args.identity, tuple(args.ssh_option))
    try:
        listen = agent_listen_address(args.listen)
    except AddressError as exc:
        raise AddressError(f"--listen: {exc.problem}", "vsock:ANY:PORT also works") from None
    agent_dir = find_agent_dir(args.agent_dir)
    secret_file = (args.secret_file or default_secret_file(target.host)).resolve()
    secret = load_or_create_secret(secret_file)
    report = install_agent(target, listen, secret, agent_dir)
    cid = int(report["cid"]) if report.get("cid", "").isdigit() else None
    transport = daemon_transport(listen, target.host, cid)
    options = {"transport": transport, "secret_file": str(secret_file)}
    print(f"Agent installed on {target.destination} and running ({report.get('started', '?')}),")
    print(f"listening on {listen}.")
    print("Use it from this host with the attach backend:")
    print("  hostnet settings set VmBackend attach")
    print(f"  hostnet settings set VmOptions {shlex.quote(json.dumps(options))}")
    if "CID" in transport:
        print("  (replace CID with the VM's vsock context id, as the hypervisor sets it)")
    return 0
