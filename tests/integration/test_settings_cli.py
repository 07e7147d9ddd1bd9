"""``hostnet settings`` as a user runs it: the real console script in a subprocess, with
HOSTNET_HOME and HOSTNET_ADMIN_SETTINGS pointing at temporary files."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import build_parser
from app.commands import settings as settings_command
from app.paths import user_paths
from app.settings import SettingsStore
from app.settings.errors import SignInNeededError
from app.signin.session import Session
from app.signin.state import write_session

HOSTNET = str(Path(sys.executable).with_name("hostnet"))


def hostnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HOSTNET, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=60
    )


def admin(entries: dict[str, object]) -> Path:
    path = Path(os.environ["HOSTNET_ADMIN_SETTINGS"])
    path.write_text(json.dumps({"configurationFileVersion": 2, **entries}))
    return path


def sign_in() -> None:
    now = time.time()
    write_session(
        user_paths(),
        Session("docker", "alice", "https://registry-1.docker.io", now, now + 600, now),
    )


def test_list_shows_value_and_source(hostnet_home: Path) -> None:
    admin({"useWindowsContainers": {"locked": True, "value": False}})
    assert hostnet("settings", "set", "VmBackend", "qemu").returncode == 0
    result = hostnet("settings", "list")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["VmBackend"] == ["qemu", "user"]
    assert rows["UseWindowsContainers"] == ["false", "locked", "by", "admin"]
    assert rows["HostNetworkingEnabled"] == ["false", "default"]
    data = json.loads(hostnet("settings", "list", "--json").stdout)
    assert data["settings"]["VmBackend"]["source"] == "user"
    assert data["settings"]["UseWindowsContainers"]["locked"] is True
    assert data["problems"] == []


def test_get(hostnet_home: Path) -> None:
    assert hostnet("settings", "get", "HostNetworkingUdpIdleTimeoutSeconds").stdout == "60\n"
    hostnet("settings", "set", "HostNetworkingExcludedPorts", "22,8000-8010")
    assert hostnet("settings", "get", "hostnetworkingexcludedports").stdout == (
        '[22, "8000-8010"]\n'
    )
    data = json.loads(hostnet("settings", "get", "VmBackend", "--json").stdout)
    assert data == {
        "key": "VmBackend",
        "value": "netns",
        "source": "default",
        "origin": None,
        "locked": False,
        "default": "netns",
        "description": data["description"],
        "restart_required": True,
    }
    result = hostnet("settings", "get", "VmBakend")
    assert result.returncode == 2
    assert "Did you mean VmBackend?" in result.stderr
    assert "Traceback" not in result.stderr


def test_locked_setting_refused(hostnet_home: Path) -> None:
    path = admin({"enhancedContainerIsolation": {"locked": True, "value": True}})
    result = hostnet("settings", "set", "EnhancedContainerIsolation", "false")
    assert result.returncode == 3
    assert "locked by your administrator" in result.stderr
    assert str(path) in result.stderr
    assert not user_paths().settings_file.exists()
    result = hostnet("settings", "reset", "EnhancedContainerIsolation")
    assert result.returncode == 3
    assert "locked by your administrator" in result.stderr
    assert hostnet("settings", "get", "EnhancedContainerIsolation").stdout == "true\n"


def test_type_errors_name_key_type_and_example(hostnet_home: Path) -> None:
    result = hostnet("settings", "set", "HostNetworkingEnabled", "maybe")
    assert result.returncode == 2
    assert "HostNetworkingEnabled" in result.stderr
    assert "a boolean (true or false)" in result.stderr
    assert "Example: `hostnet settings set HostNetworkingEnabled true`" in result.stderr
    result = hostnet("settings", "set", "HostNetworkingExcludedPorts", "22,99999")
    assert result.returncode == 2
    assert "outside 1-65535" in result.stderr
    result = hostnet("settings", "set", "SettingsVersion", "3")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_turning_on_needs_sign_in(hostnet_home: Path) -> None:
    result = hostnet("settings", "set", "HostNetworkingEnabled", "on")
    assert result.returncode == 4
    assert "hostnet login" in result.stderr
    sign_in()
    result = hostnet("settings", "set", "HostNetworkingEnabled", "on")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HostNetworkingEnabled = true\n"
    assert hostnet("settings", "get", "HostNetworkingEnabled").stdout == "true\n"


def test_problems_in_files_go_to_stderr(hostnet_home: Path) -> None:
    settings_file = user_paths().settings_file
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text('{"VmBackend": "xen", "OidcClientId": "kept"}')
    result = hostnet("settings", "list")
    assert result.returncode == 0
    assert "VmBackend" in result.stderr and "xen" in result.stderr
    assert "settings-store.json.bad-" in result.stderr
    assert "Traceback" not in result.stderr
    result = hostnet("settings", "set", "SignInProvider", "oidc")
    assert result.returncode == 0
    assert "xen" in result.stderr  # said before the write drops it
    on_disk = json.loads(settings_file.read_text())
    assert on_disk["OidcClientId"] == "kept"
    assert "VmBackend" not in on_disk
    assert hostnet("settings", "list").stderr == ""
    Path(os.environ["HOSTNET_ADMIN_SETTINGS"]).write_text("[1,")
    result = hostnet("settings", "get", "VmBackend")
    assert result.returncode == 0
    assert "not valid JSON" in result.stderr
    assert "Ask your administrator to fix" in result.stderr


def test_restart_note(hostnet_home: Path) -> None:
    result = hostnet("settings", "set", "VmBackend", "qemu")
    assert "needs a daemon restart" in result.stdout
    result = hostnet("settings", "set", "HostNetworkingExposeAllInterfaces", "on")
    assert "restart" not in result.stdout


@pytest.mark.parametrize("signed_in", [False, True])
def test_in_process_with_a_given_store(hostnet_home: Path, signed_in: bool) -> None:
    """The command's run() takes a store; the sign-in rule still reads the real session."""
    if signed_in:
        sign_in()
    store = SettingsStore(user_paths())
    args: argparse.Namespace = build_parser().parse_args(
        ["settings", "set", "HostNetworkingEnabled", "true"]
    )
    if signed_in:
        assert settings_command.run(args, store=store) == 0
    else:  # errors reach the CLI's main, the one place that turns them into an exit status
        with pytest.raises(SignInNeededError) as refused:
            settings_command.run(args, store=store)
        assert refused.value.exit_code == 4
    assert store.load()["HostNetworkingEnabled"] is signed_in
