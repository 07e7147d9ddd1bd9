"""The sign-in rule in its one home (app.policy.sign_in), and as the settings writer applies
it with no daemon running: real settings files and real session records."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.paths import admin_settings_path, user_paths
from app.policy.reasons import GateSetting
from app.policy.sign_in import (
    ENABLED,
    SIGN_IN_REQUIRED,
    after_sign_out,
    sign_in_reason,
    turning_on_refusal,
)
from app.settings import SettingsStore, SignInNeededError
from app.settings_writer import SettingsWriter, apply_sign_out, checked_update
from app.signin.session import Session
from app.signin.state import clear_session, write_session


def sign_in(store: SettingsStore, lifetime: float = 600) -> None:
    now = time.time()
    write_session(
        store.paths,
        Session("docker", "alice", "https://registry-1.docker.io", now, now + lifetime, now),
    )


def lock(key: str, value: object) -> None:
    admin_settings_path().write_text(
        json.dumps({"configurationFileVersion": 2, key: {"locked": True, "value": value}})
    )


def test_the_rule_itself() -> None:
    assert turning_on_refusal({ENABLED: True}, signed_in=False) is not None
    assert turning_on_refusal({ENABLED: True}, signed_in=True) is None
    assert turning_on_refusal({ENABLED: False}, signed_in=False) is None
    assert turning_on_refusal({"VmBackend": "qemu"}, signed_in=False) is None
    assert after_sign_out(enabled=True, locked=False).turn_off
    assert not after_sign_out(enabled=True, locked=True).turn_off
    assert "locked on" in after_sign_out(enabled=True, locked=True).note
    assert after_sign_out(enabled=False, locked=False) == after_sign_out(enabled=False, locked=True)
    required = GateSetting(True, "admin-locked", "/etc/hostnet/admin-settings.json")
    reason = sign_in_reason(required, signed_in=False)
    assert reason is not None and reason.setting == SIGN_IN_REQUIRED
    assert "/etc/hostnet/admin-settings.json" in reason.problem
    assert sign_in_reason(required, signed_in=True) is None
    assert sign_in_reason(GateSetting(False), signed_in=False) is None


def test_turning_on_needs_a_session_record(hostnet_home: Path) -> None:
    """The writer reads the real session record: none, valid, expired, cleared."""
    store = SettingsStore(user_paths())
    with pytest.raises(SignInNeededError) as caught:
        checked_update(store, {"HostNetworkingEnabled": True})
    assert "hostnet login" in caught.value.fix
    assert not store.user_file.exists()  # nothing written
    checked_update(store, {"HostNetworkingEnabled": False})  # turning off never asks
    sign_in(store)
    assert checked_update(store, {"hostNetworkingEnabled": True}).effective[ENABLED] is True
    clear_session(store.paths)
    with pytest.raises(SignInNeededError):
        checked_update(store, {ENABLED: True})
    sign_in(store, lifetime=-1)  # an expired session is nobody
    with pytest.raises(SignInNeededError):
        checked_update(store, {ENABLED: True})


def test_a_refused_change_writes_none_of_the_others(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    with pytest.raises(SignInNeededError):
        checked_update(store, {"VmBackend": "qemu", ENABLED: True})
    assert store.load()["VmBackend"] != "qemu"


def test_sign_out_turns_it_off_unless_locked_on(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    sign_in(store)
    checked_update(store, {ENABLED: True})
    clear_session(store.paths)
    change, note = apply_sign_out(store)
    assert change is not None and change.changed == (ENABLED,)
    assert store.load()[ENABLED] is False
    assert note == "Host networking is now off."
    assert apply_sign_out(store) == (None, "")  # already off: nothing to do or say
    lock(ENABLED, True)
    change, note = apply_sign_out(store)
    assert change is None and "locked on by your administrator" in note
    assert store.load()[ENABLED] is True


def test_writer_without_a_daemon_uses_the_store(hostnet_home: Path) -> None:
    store = SettingsStore(user_paths())
    writer = SettingsWriter(store)
    with pytest.raises(SignInNeededError):
        writer.set(ENABLED, True)
    sign_in(store)
    written = writer.set(ENABLED, True)
    assert not written.by_daemon and written.changed == (ENABLED,)
    assert written.entry(ENABLED)["value"] is True
    assert writer.sign_in_changed(signed_out=False) == ""
    clear_session(store.paths)
    assert writer.sign_in_changed(signed_out=True) == "Host networking is now off."
    assert store.load()[ENABLED] is False
    assert writer.reset(ENABLED).entry(ENABLED)["source"] == "default"
