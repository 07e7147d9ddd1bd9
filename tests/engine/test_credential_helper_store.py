"""docker-credential-hostnet's store, list and erase for registries other than the signed-in
one, against a real keyring (no engine needed), and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.signin_peers.keyring_daemon import KeyringDaemon

HELPER = str(Path(sys.executable).with_name("docker-credential-hostnet"))


def run(action: str, data: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HELPER, action],
        input=data,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_store_list_get_erase_round_trip(hostnet_home: Path, real_keyring: KeyringDaemon) -> None:
    credentials = {"ServerURL": "registry.example:5000", "Username": "bob", "Secret": "s3cret"}
    assert run("store", json.dumps(credentials)).returncode == 0
    assert json.loads(run("list").stdout) == {"registry.example:5000": "bob"}
    got = run("get", "https://registry.example:5000")
    assert got.returncode == 0
    assert json.loads(got.stdout)["Secret"] == "s3cret"
    assert run("erase", "registry.example:5000").returncode == 0
    missing = run("get", "registry.example:5000")
    assert (missing.returncode, missing.stdout.strip()) == (
        1,
        "credentials not found in native keychain",
    )
    for path in hostnet_home.rglob("*"):
        if path.is_file():
            assert "s3cret" not in path.read_text(errors="replace"), path


def test_bad_input_is_refused_with_the_reason(
    hostnet_home: Path, real_keyring: KeyringDaemon
) -> None:
    bad = run("store", "not json")
    assert (bad.returncode, bad.stdout.strip()) == (1, "store needs JSON on stdin")
    partial = run("store", json.dumps({"ServerURL": "r.example"}))
    assert partial.returncode == 1
    assert "ServerURL, Username and Secret" in partial.stdout
    unknown = run("fetch")
    assert unknown.returncode == 1 and "use get, store, erase or list" in unknown.stdout
