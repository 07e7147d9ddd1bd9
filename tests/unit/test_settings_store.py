"""The settings store against real files: round trips, unknown keys, modes, bad values,
admin locks and several writers at once. (The sign-in rule on writes: test_sign_in_rule.py.)"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from app.paths import admin_settings_path, user_paths
from app.settings import (
    ReadOnlySettingError,
    SettingLockedError,
    SettingsStore,
    SettingValueError,
    UnknownSettingError,
    current_version,
    specs,
)


def write_admin(entries: dict[str, object], version: int = 2) -> Path:
    path = admin_settings_path()
    path.write_text(json.dumps({"configurationFileVersion": version, **entries}))
    return path


def test_defaults_without_files(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    effective = store.load()
    assert effective.problems == ()
    for key, spec in specs().items():
        assert effective[key] == spec.default
        assert effective.source(key) == "default"
    assert not store.user_file.exists()


def test_round_trip_every_settable_key(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    values = {
        "HostNetworkingEnabled": True,
        "EnhancedContainerIsolation": True,
        "UseWindowsContainers": True,
        "HostNetworkingExposeAllInterfaces": True,
        "HostNetworkingExcludedPorts": [22, "8000-8010"],
        "HostNetworkingUdpIdleTimeoutSeconds": 2.5,
        "HostNetworkingDataPath": "proxy",
        "VmBackend": "qemu",
        "VmOptions": {"memory_mib": 2048, "cpus": 2},
        "FilesharingDirectories": ["/srv/projects"],
        "SignInProvider": "oidc",
        "DockerRegistry": "http://127.0.0.1:5000",
        "OidcIssuer": "https://login.example.com/realms/x",
        "OidcClientId": "hostnet-desktop",
        "ContainerEngineEnabled": True,
    }
    assert set(values) == {k for k, s in specs().items() if s.user_settable}
    for key, value in values.items():
        store.set(key, value)
    again = SettingsStore(user_paths()).load()
    for key, value in values.items():
        assert again[key] == value
        assert again.source(key) == "user"
        assert again.entry(key).origin == store.user_file
    on_disk = json.loads(store.user_file.read_text())
    assert on_disk["SettingsVersion"] == current_version()
    assert {k: on_disk[k] for k in values} == values


def test_update_reports_changed_keys_and_restart(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    change = store.set("HostNetworkingExcludedPorts", [80])
    assert change.changed == ("HostNetworkingExcludedPorts",)
    assert change.restart_required is False
    change = store.set("VmBackend", "qemu")
    assert change.changed == ("VmBackend",)
    assert change.restart_required is True
    change = store.set("VmBackend", "qemu")
    assert change.changed == ()
    assert change.restart_required is False


def test_unknown_keys_are_kept(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.user_file.parent.mkdir(parents=True)
    original = {
        "SettingsVersion": current_version(),
        "AutoStart": True,
        "DockerThing": {"nested": [1, 2, {"x": None}]},
        "HostNetworkingExposeAllInterfaces": True,
    }
    store.user_file.write_text(json.dumps(original))
    store.set("VmBackend", "qemu")
    on_disk = json.loads(store.user_file.read_text())
    assert on_disk == {**original, "VmBackend": "qemu"}


def test_new_file_is_0600(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.set("VmBackend", "qemu")
    assert stat.S_IMODE(store.user_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_existing_mode_is_kept(hostnet_home: Path, mode: int) -> None:
    store = SettingsStore(user_paths())
    store.set("VmBackend", "qemu")
    os.chmod(store.user_file, mode)
    store.set("VmBackend", "netns")
    assert stat.S_IMODE(store.user_file.stat().st_mode) == mode
    assert store.load()["VmBackend"] == "netns"


def test_no_temp_files_left_behind(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    for n in range(20):
        store.set("HostNetworkingUdpIdleTimeoutSeconds", n + 1)
    names = sorted(p.name for p in store.user_file.parent.iterdir())
    assert names == ["settings-store.json", "settings-store.json.lock"]


def test_bad_value_falls_back_keeps_the_rest_and_a_copy(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.user_file.parent.mkdir(parents=True)
    text = json.dumps(
        {
            "VmBackend": "xen",
            "HostNetworkingUdpIdleTimeoutSeconds": -1,
            "HostNetworkingExposeAllInterfaces": True,
            "OidcClientId": "abc",
            "Mine": 1,
        }
    )
    store.user_file.write_text(text)
    effective = store.load()
    assert effective["VmBackend"] == "netns"
    assert effective.source("VmBackend") == "default"
    assert effective["HostNetworkingUdpIdleTimeoutSeconds"] == 60
    assert effective["HostNetworkingExposeAllInterfaces"] is True
    assert effective["OidcClientId"] == "abc"
    by_key = {p.key: p for p in effective.problems}
    assert set(by_key) == {"VmBackend", "HostNetworkingUdpIdleTimeoutSeconds"}
    assert "'netns'" in by_key["VmBackend"].message and "xen" in by_key["VmBackend"].message
    assert "hostnet settings set VmBackend" in by_key["VmBackend"].fix
    copies = list(store.user_file.parent.glob("settings-store.json.bad-*"))
    assert len(copies) == 1
    assert copies[0].read_text() == text
    assert str(copies[0]) in by_key["VmBackend"].message
    # loading again does not pile up copies
    store.load()
    store.load()
    assert len(list(store.user_file.parent.glob("settings-store.json.bad-*"))) == 1
    # a write drops only the bad values
    store.set("SignInProvider", "oidc")
    on_disk = json.loads(store.user_file.read_text())
    assert "VmBackend" not in on_disk
    assert "HostNetworkingUdpIdleTimeoutSeconds" not in on_disk
    assert on_disk["HostNetworkingExposeAllInterfaces"] is True
    assert on_disk["OidcClientId"] == "abc"
    assert on_disk["Mine"] == 1
    assert store.load().problems == ()


def test_invalid_json_uses_defaults_and_set_writes_a_fresh_file(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.user_file.parent.mkdir(parents=True)
    store.user_file.write_text('{"VmBackend": "qemu",,}')
    effective = store.load()
    (problem,) = effective.problems
    assert problem.key is None
    assert "not valid JSON" in problem.message and "line 1" in problem.message
    assert effective["VmBackend"] == "netns"
    store.set("HostNetworkingExposeAllInterfaces", True)
    assert json.loads(store.user_file.read_text())["HostNetworkingExposeAllInterfaces"] is True
    (copy,) = store.user_file.parent.glob("settings-store.json.bad-*")
    assert copy.read_text() == '{"VmBackend": "qemu",,}'


def test_admin_only_key_in_user_file_is_ignored(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.user_file.parent.mkdir(parents=True)
    store.user_file.write_text('{"SignInRequired": false}')
    effective = store.load()
    assert effective.source("SignInRequired") == "default"
    assert [p.key for p in effective.problems] == ["SignInRequired"]
    with pytest.raises(ReadOnlySettingError):
        store.set("SignInRequired", True)
    with pytest.raises(ReadOnlySettingError):
        store.set("SettingsVersion", 5)


def test_camel_case_file_is_migrated(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.user_file.parent.mkdir(parents=True)
    store.user_file.write_text(
        json.dumps({"hostNetworkingEnabled": True, "useWindowsContainers": True, "other": 1})
    )
    effective = store.load()
    assert effective["HostNetworkingEnabled"] is True
    assert effective["UseWindowsContainers"] is True
    store.set("VmBackend", "qemu")
    on_disk = json.loads(store.user_file.read_text())
    assert on_disk == {
        "HostNetworkingEnabled": True,
        "UseWindowsContainers": True,
        "other": 1,
        "SettingsVersion": current_version(),
        "VmBackend": "qemu",
    }


def test_newer_file_version_is_kept(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.user_file.parent.mkdir(parents=True)
    store.user_file.write_text(json.dumps({"SettingsVersion": 99, "FutureKey": [1]}))
    effective = store.load()
    assert [p.key for p in effective.problems] == ["SettingsVersion"]
    store.set("VmBackend", "qemu")
    on_disk = json.loads(store.user_file.read_text())
    assert on_disk["SettingsVersion"] == 99
    assert on_disk["FutureKey"] == [1]


def test_bad_values_are_refused_before_writing(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.set("VmBackend", "qemu")
    before = store.user_file.read_bytes()
    for key, value in [
        ("VmBackend", "xen"),
        ("HostNetworkingEnabled", "yes"),
        ("HostNetworkingExcludedPorts", [0]),
        ("HostNetworkingExcludedPorts", ["10-5"]),
        ("HostNetworkingUdpIdleTimeoutSeconds", 0),
        ("DockerRegistry", "registry.example.com"),
        ("VmOptions", []),
    ]:
        with pytest.raises(SettingValueError) as caught:
            store.set(key, value)
        assert caught.value.setting.key == key
        assert f"hostnet settings set {key}" in caught.value.setting.fix
    with pytest.raises(UnknownSettingError):
        store.set("NoSuchThing", 1)
    # one bad change in a batch means nothing is written
    with pytest.raises(SettingValueError):
        store.update({"OidcClientId": "ok", "VmBackend": "xen"})
    assert store.user_file.read_bytes() == before


def test_admin_lock_wins_and_cannot_be_changed(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    store.set("UseWindowsContainers", False)
    admin = write_admin(
        {
            "useWindowsContainers": {"locked": True, "value": True},
            "VmBackend": {"locked": False, "value": "qemu"},
            "exposeDockerAPIOnTCP2375": {"locked": True, "value": False},
        }
    )
    effective = store.load()
    assert effective.problems == ()
    assert effective["UseWindowsContainers"] is True
    assert effective.source("UseWindowsContainers") == "admin-locked"
    assert effective.entry("UseWindowsContainers").origin == admin
    assert effective["VmBackend"] == "qemu"
    assert effective.source("VmBackend") == "admin-default"
    before = store.user_file.read_bytes()
    with pytest.raises(SettingLockedError) as caught:
        store.set("UseWindowsContainers", False)
    assert "locked by your administrator" in caught.value.setting.message
    assert str(admin) in caught.value.setting.message
    with pytest.raises(SettingLockedError):
        store.reset("UseWindowsContainers")
    assert store.user_file.read_bytes() == before
    # setting the locked value is accepted and changes nothing
    assert store.set("UseWindowsContainers", True).changed == ()
    # an unlocked admin value is only a default: the user's own value wins
    change = store.set("VmBackend", "netns")
    assert change.effective["VmBackend"] == "netns"
    assert change.effective.source("VmBackend") == "user"
    change = store.reset("VmBackend")
    assert change.effective.source("VmBackend") == "admin-default"


def test_gate_from_effective_settings(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    assert store.load().gate(signed_in=True).state == "off"
    store.set("HostNetworkingEnabled", True)
    assert store.load().gate(signed_in=True).state == "allowed"
    write_admin({"enhancedContainerIsolation": {"locked": True, "value": True}})
    decision = store.load().gate(signed_in=True)
    assert decision.state == "refused"
    assert "locked by your administrator" in decision.message
    write_admin({"SignInRequired": {"locked": True, "value": True}})
    assert store.load().gate(signed_in=False).state == "refused"
    assert store.load().gate(signed_in=True).state == "allowed"
    admin_settings_path().write_text("{oops")
    decision = store.load().gate(signed_in=True)
    assert decision.state == "refused"
    assert str(admin_settings_path()) in decision.message


def _own_key_writer(home: str, key: str, template: str, count: int, barrier: object) -> None:
    """Write KEY COUNT times; before each write, check the previous one is still there (only
    this process writes KEY, so anything else is a lost update). Exit status 1 on a loss."""
    os.environ["HOSTNET_HOME"] = home
    store = SettingsStore(user_paths())
    barrier.wait()  # type: ignore[attr-defined]
    for n in range(count):
        if n and store.load()[key] != template.format(n - 1):
            raise SystemExit(1)
        store.set(key, template.format(n))


def test_concurrent_writers_do_not_lose_each_others_keys(hostnet_home: Path) -> None:
    """Two processes changing different keys at once: the flock makes each read-modify-write
    whole, so neither ever reverts the other's key."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(
            target=_own_key_writer,
            args=(str(hostnet_home), "OidcClientId", "client-{}", 150, barrier),
        ),
        ctx.Process(
            target=_own_key_writer,
            args=(str(hostnet_home), "DockerRegistry", "https://r{}.example.com", 150, barrier),
        ),
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    effective = SettingsStore(user_paths()).load()
    assert effective["OidcClientId"] == "client-149"
    assert effective["DockerRegistry"] == "https://r149.example.com"
