"""The non-secret session record: written atomically, read back, expiry honoured."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from app.paths import Paths
from app.signin.session import Session
from app.signin.state import (
    clear_session,
    current_session,
    is_signed_in,
    record_paths,
    stored_session,
    write_session,
)


def make_paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "c", tmp_path / "s", tmp_path / "r", tmp_path / "l")


def make_session(expires_in: float = 3600, store: str = "keyring") -> Session:
    now = time.time()
    return Session(
        provider="docker",
        user="alice",
        server="https://registry-1.docker.io",
        signed_in_at=now,
        expires_at=now + expires_in,
        refreshed_at=now,
        store=store,  # type: ignore[arg-type]
    )


def test_nobody_signed_in_without_a_record(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    assert not is_signed_in(paths)
    assert current_session(paths) is None


def test_written_session_is_read_back_and_private(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    session = make_session()
    target = write_session(paths, session)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert is_signed_in(paths)
    assert current_session(paths) == session


def test_expired_session_is_not_signed_in(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    write_session(paths, make_session(expires_in=-1))
    assert not is_signed_in(paths)
    assert stored_session(paths) is not None


def test_this_run_session_lives_in_runtime_dir(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    write_session(paths, make_session())
    write_session(paths, make_session(store="memory"))
    remembered, this_run = record_paths(paths)
    assert this_run.exists() and not remembered.exists()
    assert is_signed_in(paths)
    assert clear_session(paths)
    assert not is_signed_in(paths)
    assert not clear_session(paths)


def test_damaged_record_means_signed_out(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    remembered, _ = record_paths(paths)
    remembered.parent.mkdir(parents=True)
    remembered.write_text("{not json")
    assert not is_signed_in(paths)
    record = make_session().to_json()
    record["expires_at"] = "tomorrow"
    remembered.write_text(json.dumps(record))
    assert not is_signed_in(paths)
    record = make_session().to_json()
    record["provider"] = "github"
    remembered.write_text(json.dumps(record))
    assert not is_signed_in(paths)
