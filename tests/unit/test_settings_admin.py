"""admin-settings.json: Docker's shape, locks, unknown Docker keys, and broken files treated
strictly (the gate refuses, malformed entries lock their key at its default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.paths import Paths
from app.settings import SettingLockedError, SettingsStore, read_admin_settings


def store_for(tmp_path: Path, admin: Path) -> SettingsStore:
    paths = Paths(tmp_path / "c", tmp_path / "s", tmp_path / "r", tmp_path / "l")
    return SettingsStore(paths, admin_file=admin)


def write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_missing_file_is_no_policy(tmp_path: Path) -> None:
    admin = read_admin_settings(tmp_path / "none.json")
    assert not admin.exists and not admin.broken and admin.entries == {}


def test_docker_desktop_file_with_many_unknown_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "admin.json",
        {
            "configurationFileVersion": 2,
            "exposeDockerAPIOnTCP2375": {"locked": True, "value": False},
            "proxy": {"locked": True, "mode": "system", "http": "", "https": ""},
            "enhancedContainerIsolation": {
                "locked": True,
                "value": True,
                "dockerSocketMount": {"imageList": {"images": []}},
            },
            "linuxVM": {"wslEngineEnabled": {"locked": False, "value": False}},
            "useWindowsContainers": {"locked": False, "value": False},
        },
    )
    admin = read_admin_settings(path)
    assert not admin.broken, admin.problems
    assert set(admin.entries) == {"EnhancedContainerIsolation", "UseWindowsContainers"}
    assert admin.locked("EnhancedContainerIsolation") is not None
    assert admin.locked("UseWindowsContainers") is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '"x"',
        "",
        json.dumps({"EnhancedContainerIsolation": {"locked": True, "value": True}}),
        json.dumps({"configurationFileVersion": 7}),
        json.dumps({"configurationFileVersion": True}),
    ],
)
def test_broken_file_refuses_host_networking(tmp_path: Path, content: str) -> None:
    path = tmp_path / "admin.json"
    path.write_text(content)
    store = store_for(tmp_path, path)
    store.set("HostNetworkingEnabled", True)
    effective = store.load()
    assert effective.admin_problems
    assert all(p.file == path for p in effective.admin_problems)
    decision = effective.gate(signed_in=True)
    assert decision.state == "refused"
    assert f"Ask your administrator to fix {path}" in decision.message
    # turning it off is still possible
    assert store.set("HostNetworkingEnabled", False).effective["HostNetworkingEnabled"] is False


def test_unreadable_file_refuses(tmp_path: Path) -> None:
    path = tmp_path / "admin-dir.json"
    path.mkdir()  # reading a folder fails for real, also as root
    store = store_for(tmp_path, path)
    effective = store.load()
    assert effective.admin_problems
    assert "cannot be read" in effective.admin_problems[0].message
    assert "Ask your administrator" in effective.admin_problems[0].fix


@pytest.mark.parametrize(
    "entry",
    [
        True,
        {"value": True},
        {"locked": "yes", "value": True},
        {"locked": False},
        {"locked": True, "value": "maybe"},
    ],
)
def test_malformed_entry_locks_key_at_default(tmp_path: Path, entry: object) -> None:
    path = write(
        tmp_path / "admin.json",
        {
            "configurationFileVersion": 2,
            "UseWindowsContainers": entry,
            "VmBackend": {"locked": True, "value": "qemu"},
        },
    )
    store = store_for(tmp_path, path)
    effective = store.load()
    assert effective["UseWindowsContainers"] is False
    assert effective.source("UseWindowsContainers") == "admin-locked"
    assert effective["VmBackend"] == "qemu"  # the good entry still applies
    (problem,) = effective.admin_problems
    assert problem.key == "UseWindowsContainers"
    with pytest.raises(SettingLockedError):
        store.set("UseWindowsContainers", True)
    assert effective.gate(signed_in=True).state in ("off", "refused")


def test_lock_released_when_admin_changes_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "admin.json",
        {"configurationFileVersion": 2, "VmBackend": {"locked": True, "value": "qemu"}},
    )
    store = store_for(tmp_path, path)
    with pytest.raises(SettingLockedError):
        store.set("VmBackend", "netns")
    write(path, {"configurationFileVersion": 2})
    assert store.set("VmBackend", "netns").effective["VmBackend"] == "netns"


def test_sign_in_required_comes_only_from_admin(tmp_path: Path) -> None:
    path = write(
        tmp_path / "admin.json",
        {"configurationFileVersion": 2, "SignInRequired": {"locked": False, "value": True}},
    )
    store = store_for(tmp_path, path)
    effective = store.load()
    assert effective["SignInRequired"] is True
    assert effective.source("SignInRequired") == "admin-default"
    store.set("HostNetworkingEnabled", True)
    assert effective.gate(signed_in=False).state == "off"
    assert store.load().gate(signed_in=False).state == "refused"
    assert store.load().gate(signed_in=True).state == "allowed"
