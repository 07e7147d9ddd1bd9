"""The per-VM secret file: creation, permissions, refusal of unsafe or malformed files."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from proxy.wire import SecretFileError, load_or_create_secret, load_secret


def test_creates_a_0600_file_of_32_random_bytes_in_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "vms" / "dev" / "secret"
    old_umask = os.umask(0)
    try:
        secret = load_or_create_secret(path)
    finally:
        os.umask(old_umask)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes() == secret
    assert load_or_create_secret(path) == secret == load_secret(path)
    assert load_or_create_secret(tmp_path / "other") != secret
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temp file left


def test_concurrent_creators_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_secret(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o622])
def test_refuses_a_file_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret"
    load_or_create_secret(path)
    path.chmod(mode)
    with pytest.raises(SecretFileError) as caught:
        load_or_create_secret(path)
    assert f"{mode:04o}" in str(caught.value)
    assert f"chmod 600 {path}" in str(caught.value)


def test_refuses_wrong_size_missing_file_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(SecretFileError, match="holds 5 bytes, not 32"):
        load_secret(path)
    with pytest.raises(SecretFileError, match="does not exist"):
        load_secret(tmp_path / "missing")
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretFileError, match="not a regular file"):
        load_secret(folder)


def test_refuses_a_file_owned_by_another_user(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    load_or_create_secret(path)
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(path, 12345, 12345)
    with pytest.raises(SecretFileError, match="belongs to uid 12345"):
        load_secret(path)
