"""The desktop .deb: built once per session with PyInstaller and dpkg-deb (gzip, the fastest),
checked with dpkg-deb, installed with dpkg into an empty root, and run from there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.control_client import ControlClient
from installer.build import build_all
from installer.deb_package import DEPENDS, deb_architecture
from proxy import __version__
from tests.integration.vm_helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "test-package"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(400),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)"),
]


@dataclass(frozen=True)
class Installed:
    root: Path

    def argv(self, *args: str) -> list[str]:
        """The installed /usr/bin/hostnet, with the root's /opt/hostnet mounted at /opt/hostnet
        in a private mount namespace (the symlink is absolute, as installed)."""
        script = (
            'mount -t tmpfs hostnet-test /opt && mkdir /opt/hostnet && mount --bind "$1" '
            '/opt/hostnet && shift && exec "$@"'
        )
        argv = ["unshare", "--mount", "sh", "-c", script, "sh", str(self.root / "opt" / "hostnet")]
        return [*argv, str(self.root / "usr" / "bin" / "hostnet"), *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="session")
def deb() -> Path:
    if BUILD.exists():
        shutil.rmtree(BUILD)
    outputs = build_all(BUILD, BUILD / "dist", compression="gzip")
    assert outputs.deb is not None
    return outputs.deb


def deb_field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_metadata(deb: Path) -> None:
    architecture = deb_architecture()
    assert deb.name == f"hostnet_{__version__}_{architecture}.deb"
    assert deb_field(deb, "Package") == "hostnet"
    assert deb_field(deb, "Version") == __version__
    assert deb_field(deb, "Architecture") == architecture
    depends = {d.split()[0] for d in deb_field(deb, "Depends").split(", ")}
    for library in ("libc6", "libegl1", "libxcb1", "libxcb-cursor0", "libxkbcommon-x11-0"):
        assert library in depends
    assert int(deb_field(deb, "Installed-Size")) > 50_000  # KiB: Qt and Python are in it


def test_contents(deb: Path) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    entries = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path, *rest = line.split()
        entries[path.removeprefix(".")] = (mode, owner, rest)
    assert entries["/usr/bin/hostnet"][0].startswith("l")
    assert entries["/usr/bin/hostnet"][2] == ["->", "/opt/hostnet/hostnet"]
    assert entries["/opt/hostnet/hostnet"][0] == "-rwxr-xr-x"
    expected = [
        "/usr/share/applications/hostnet.desktop",
        "/usr/share/icons/hicolor/scalable/apps/hostnet.svg",
        "/usr/share/icons/hicolor/48x48/apps/hostnet.png",
        "/usr/share/icons/hicolor/256x256/apps/hostnet.png",
        "/usr/lib/systemd/user/hostnet-daemon.service",
        "/usr/share/hostnet/agent/hostnet-agent.pyz",
        "/usr/share/hostnet/agent/hostnet-agent.service",
    ]
    for path in expected:
        mode = "-rwxr-xr-x" if path.endswith(".pyz") else "-rw-r--r--"
        assert entries[path][0] == mode, path
        assert entries[path][1] == "root/root", path
    assert any(
        p.startswith("/opt/hostnet/_internal/PySide6/Qt/plugins/platforms/") for p in entries
    )
    assert all(owner == "root/root" for _m, owner, _r in entries.values())


@pytest.fixture(scope="session")
def extracted(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deb-extract")
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(root)], check=True)
    return root


def test_desktop_entry_and_units(extracted: Path) -> None:
    desktop = extracted / "usr/share/applications/hostnet.desktop"
    text = desktop.read_text()
    assert re.search(r"^Exec=hostnet$", text, re.M)
    assert re.search(r"^Icon=hostnet$", text, re.M)
    result = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True)
    assert result.returncode == 0, result.stdout
    unit = (extracted / "usr/lib/systemd/user/hostnet-daemon.service").read_text()
    assert "ExecStart=/usr/bin/hostnet daemon" in unit
    png = (extracted / "usr/share/icons/hicolor/48x48/apps/hostnet.png").read_bytes()
    assert png.startswith(b"\x89PNG") and png[16:24] == (48).to_bytes(4, "big") * 2


def _needed_libraries(root: Path) -> tuple[set[str], set[str]]:
    """(sonames the bundle's ELF files need, file names the bundle itself has)."""
    present, needed = set(), set()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            present.add(name)
            if path.is_symlink() or path.read_bytes()[:4] != b"\x7fELF":
                continue
            dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True)
            needed.update(re.findall(r"\(NEEDED\).*\[(.+?)\]", dynamic.stdout))
    return needed, present


def test_depends_provide_every_library_the_bundle_does_not_carry(
    deb: Path, extracted: Path
) -> None:
    """Each shared library the bundle needs but does not ship resolves, on this Debian machine,
    to a file of a package named in Depends (make setup installs them all)."""
    needed, present = _needed_libraries(extracted / "opt" / "hostnet")
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    depends = {d.split()[0] for d in DEPENDS}
    problems = []
    for soname in sorted(needed - present):
        found = re.search(rf"^\s+{re.escape(soname)} \(libc6,x86-64[^)]*\) => (\S+)", cache, re.M)
        if found is None:
            problems.append(f"{soname}: not on this machine (add its package to dev-packages)")
            continue
        owner = subprocess.run(
            ["dpkg", "-S", os.path.realpath(found.group(1))], capture_output=True, text=True
        )
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", found.group(1)], capture_output=True, text=True)
        package = owner.stdout.split(":")[0]
        if package not in depends:
            problems.append(f"{soname}: from {package or 'no package'}, not in Depends")
    assert not problems, problems


@pytest.fixture(scope="session")
def installed(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """dpkg installs the .deb into an empty root (--force-depends: the root has no libraries)."""
    root = tmp_path_factory.mktemp("deb-root")
    admin = root / "var" / "lib" / "dpkg"
    for folder in ("info", "updates", "triggers"):
        (admin / folder).mkdir(parents=True)
    (admin / "status").touch()
    (admin / "available").touch()
    result = subprocess.run(
        ["dpkg", f"--root={root}", "--force-depends", "--install", str(deb)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    yield Installed(root)


def test_dpkg_records_the_installation(installed: Installed) -> None:
    status = subprocess.run(
        ["dpkg", f"--root={installed.root}", "--status", "hostnet"], capture_output=True, text=True
    )
    assert "Status: install ok installed" in status.stdout
    assert f"Version: {__version__}" in status.stdout
    files = (installed.root / "var/lib/dpkg/info/hostnet.list").read_text().splitlines()
    assert "/usr/bin/hostnet" in files and "/opt/hostnet/hostnet" in files


def test_installed_hostnet_version(installed: Installed) -> None:
    result = installed.run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hostnet {__version__}"


def test_installed_hostnet_status_without_daemon(installed: Installed, tmp_path: Path) -> None:
    env = {**os.environ, "HOSTNET_HOME": str(tmp_path / "home")}
    result = installed.run("status", env=env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stdout.startswith("hostnet: stopped:")
    assert "Traceback" not in result.stdout + result.stderr
    as_json = installed.run("status", "--json", env=env)
    assert as_json.returncode == 3
    assert '"state": "stopped"' in as_json.stdout


def test_installed_bundle_runs_modules_like_python(installed: Installed) -> None:
    """The daemon starts helpers as ``sys.executable -m MODULE``; the bundle honours that."""
    result = installed.run("-m", "vm.agent", "--help")
    assert result.returncode == 0, result.stderr
    assert "--listen ADDRESS" in result.stdout
    install_help = installed.run("vm", "install-agent", "--help")
    assert install_help.returncode == 0, install_help.stderr
    assert "--ssh USER@HOST" in install_help.stdout


VM_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
# The agent's command line, as its child (the command ``vm exec`` runs) sees it.
AGENT_CMDLINE = ["sh", "-c", "tr '\\0' ' ' < /proc/$PPID/cmdline"]


@pytest.mark.vm
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("qemu-system-x86_64") is None,
    reason="needs root and QEMU (qemu-system-x86)",
)
def test_installed_daemon_boots_the_qemu_agent_from_its_zipapp(
    installed: Installed, tmp_path: Path
) -> None:
    """The frozen daemon cannot hand the guest its own launcher as a Python: it boots the
    zipapp it carries, run by the host's python3, and the agent connects."""
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    settings = {
        "HostNetworkingEnabled": True,
        "VmBackend": "qemu",
        "VmOptions": {"image_cache_dir": str(VM_CACHE), "accel": "tcg", "memory_mib": 768},
    }
    (home / "config" / "settings-store.json").write_text(json.dumps(settings))
    env = {
        **os.environ,
        "HOSTNET_HOME": str(home),
        "HOSTNET_ADMIN_SETTINGS": str(home / "admin-settings.json"),
    }
    client = ControlClient(home / "run" / "control.sock")
    with (home / "daemon.out").open("w") as out:
        daemon = subprocess.Popen(installed.argv("daemon"), env=env, stdout=out, stderr=out)

    def agent_connected() -> bool:
        if daemon.poll() is not None:
            raise AssertionError(f"the daemon exited with {daemon.returncode}")
        try:
            return bool(client.get("/v1/status")["agent"]["state"] == "connected")
        except OSError:
            return False

    console = home / "state" / "vm" / "qemu" / "console.log"
    try:
        wait_for(agent_connected, 300, "the agent in the QEMU VM to connect")
        result = installed.run("vm", "exec", "--", *AGENT_CMDLINE, env=env)
        assert result.returncode == 0, result.stderr
        agent = result.stdout.split()
        assert Path(agent[0]).name.startswith("python3") and agent[1] == "-S", agent
        assert agent[2] == "/opt/hostnet/_internal/agent/hostnet-agent.pyz", agent
    except BaseException:
        print((home / "daemon.out").read_text()[-4000:])
        if console.exists():
            print(console.read_text()[-4000:])
        raise
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
