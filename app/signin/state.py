"""Is anyone signed in? Reads and writes the non-secret session record.

The record is ``session.json`` in the state folder when the secrets are remembered (keyring
or an opted-in file), or in the runtime folder when they are kept for this run only (the
runtime folder is cleared at logout/reboot, so such a session does not outlive the secrets).
Cheap and keyring-free: the settings gate and the daemon call ``is_signed_in`` freely.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from app.paths import Paths
from app.signin.session import Session

RECORD_NAME = "session.json"


def record_paths(paths: Paths) -> tuple[Path, Path]:
    """The remembered record, then the this-run-only record."""
    return paths.state_dir / RECORD_NAME, paths.runtime_dir / RECORD_NAME


def _read(path: Path) -> Session | None:
    try:
        raw = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    try:
        return Session.from_json(json.loads(raw))
    except (ValueError, json.JSONDecodeError):
        return None  # a damaged record means nobody is signed in


def stored_session(paths: Paths) -> Session | None:
    """The session on record, expired or not (None when there is none or it is unreadable)."""
    for path in record_paths(paths):
        session = _read(path)
        if session is not None:
            return session
    return None


def current_session(paths: Paths, now: float | None = None) -> Session | None:
    """The signed-in session, or None when nobody is signed in or the session has expired."""
    session = stored_session(paths)
    if session is None or not session.is_valid(now):
        return None
    return session


def is_signed_in(paths: Paths) -> bool:
    return current_session(paths) is not None


def write_session(paths: Paths, session: Session) -> Path:
    """Record the session atomically (temp file, fsync, rename), mode 0600."""
    remembered_path, run_path = record_paths(paths)
    target = run_path if session.store == "memory" else remembered_path
    other = remembered_path if target is run_path else run_path
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(session.to_json(), handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(FileNotFoundError):
        other.unlink()
    return target


def clear_session(paths: Paths) -> bool:
    """Remove every session record; True when there was one."""
    removed = False
    for path in record_paths(paths):
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            pass
    return removed


def session_age(session: Session, now: float | None = None) -> float:
    return (now if now is not None else time.time()) - session.signed_in_at
