"""The keyring (locked, absent, opted-in file), the sign-in gate on HostNetworkingEnabled, and
the CLI, with the real registry and a real gnome-keyring."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import secretstorage

from app.paths import user_paths
from app.signin import manager
from app.signin.errors import KeyringLocked
from app.signin.state import is_signed_in, record_paths
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER, Registry
from tests.signin_peers.keyring_daemon import start_keyring


async def test_no_keyring_signs_in_for_this_run_only(
    hostnet_home: Path, no_keyring: None, basic_registry: Registry
) -> None:
    paths = user_paths()
    outcome = await manager.login_docker(
        paths, DOCKER_USER, DOCKER_PASSWORD, registry=basic_registry.url
    )
    assert not outcome.remembered and "will not be remembered" in outcome.notice
    assert "--store-secrets-in-file" in outcome.notice
    remembered, this_run = record_paths(paths)
    assert this_run.exists() and not remembered.exists()
    assert is_signed_in(paths)
    for path in hostnet_home.rglob("*"):
        if path.is_file():
            assert DOCKER_PASSWORD not in path.read_text(errors="replace")
    await manager.logout(paths)
    assert not is_signed_in(paths)


async def test_opt_in_file_is_private_and_cleared(
    hostnet_home: Path, no_keyring: None, basic_registry: Registry
) -> None:
    paths = user_paths()
    outcome = await manager.login_docker(
        paths, DOCKER_USER, DOCKER_PASSWORD, registry=basic_registry.url, store_in_file=True
    )
    assert outcome.remembered and outcome.session.store == "file"
    secrets_file = paths.state_dir / "signin-secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert DOCKER_PASSWORD in secrets_file.read_text()
    assert (
        DOCKER_PASSWORD not in paths.settings_file.read_text()
        if paths.settings_file.exists()
        else True
    )
    renewed = await manager.refresh_session(paths, force=True)
    assert renewed is not None
    await manager.logout(paths)
    assert not secrets_file.exists()


async def test_locked_keyring_gives_clear_error(
    hostnet_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, basic_registry: Registry
) -> None:
    daemon = start_keyring(tmp_path / "locked-keyring")
    try:
        for key, value in daemon.env.items():
            monkeypatch.setenv(key, value)
        connection = secretstorage.dbus_init()
        # make sure the default collection exists, then lock it (no prompter can unlock it)
        collection = secretstorage.get_default_collection(connection)
        collection.lock()
        assert collection.is_locked()
        monkeypatch.setattr("app.signin.secrets.KEYRING_TIMEOUT", 2.0)
        with pytest.raises(KeyringLocked, match="locked"):
            await manager.login_docker(
                user_paths(), DOCKER_USER, DOCKER_PASSWORD, registry=basic_registry.url
            )
        assert not is_signed_in(user_paths())
    finally:
        daemon.stop()


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_login_gate_logout(
    hostnet_home: Path, real_keyring: object, basic_registry: Registry
) -> None:
    """The whole story: refused toggle, login, toggle on, whoami, logout turns it off."""
    refused = run_cli("settings", "set", "HostNetworkingEnabled", "true")
    assert refused.returncode != 0 and "sign" in refused.stderr.lower()

    bad = run_cli(
        "login",
        "--registry",
        basic_registry.url,
        "-u",
        DOCKER_USER,
        "--password-stdin",
        stdin="wrong\n",
    )
    assert bad.returncode == 1 and "refused" in bad.stderr and "Traceback" not in bad.stderr

    good = run_cli(
        "login",
        "--registry",
        basic_registry.url,
        "-u",
        DOCKER_USER,
        "--password-stdin",
        stdin=DOCKER_PASSWORD + "\n",
    )
    assert good.returncode == 0, good.stderr
    assert DOCKER_PASSWORD not in good.stdout + good.stderr

    who = run_cli("whoami", "--json")
    assert who.returncode == 0 and json.loads(who.stdout)["user"] == DOCKER_USER

    on = run_cli("settings", "set", "HostNetworkingEnabled", "true")
    assert on.returncode == 0, on.stderr
    settings = json.loads((hostnet_home / "config" / "settings-store.json").read_text())
    assert settings["HostNetworkingEnabled"] is True

    out = run_cli("logout")
    assert out.returncode == 0 and "Signed out" in out.stdout
    settings = json.loads((hostnet_home / "config" / "settings-store.json").read_text())
    assert settings["HostNetworkingEnabled"] is False
    assert run_cli("whoami").returncode == 1


def test_cli_never_takes_password_from_argv() -> None:
    result = run_cli("login", "--password", "secret")
    assert result.returncode != 0 and "unrecognized arguments" in result.stderr
