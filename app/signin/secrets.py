"""Where sign-in secrets live: the OS keyring (service "hostnet"), and only a real one.

keyring's ``fail`` and ``null`` backends (and plaintext ones) do not count as a keyring. Without
a real one, secrets are kept in memory for this run only, unless the person explicitly opts in
to a 0600 file in the state folder. Every keyring call runs with a time limit, since a locked
keyring may wait for an unlock prompt nobody answers.

Each provider keeps one entry: a JSON object (username + password/token for Docker; the refresh,
access and ID tokens for OpenID Connect).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import keyring
import keyring.backend
import keyring.core
import keyring.errors
from keyring.backends import chainer, fail, null

from app.paths import Paths
from app.signin.errors import KeyringError, KeyringLocked, NoKeyring
from app.signin.session import SecretStore

SERVICE = "hostnet"
KEYRING_TIMEOUT = 5.0
SECRETS_FILE = "signin-secrets.json"
_FAKE_MODULE_HINTS = ("keyrings.alt",)
T = TypeVar("T")

# secrets kept for this run only (store "memory"): per process, never written anywhere
_memory: dict[str, str] = {}
_memory_lock = threading.Lock()


def _is_real(backend: keyring.backend.KeyringBackend) -> bool:
    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return bool(backend.backends) and all(_is_real(b) for b in backend.backends)
    return not type(backend).__module__.startswith(_FAKE_MODULE_HINTS)


def _bounded(call: Callable[[], T], what: str, timeout: float | None = None) -> T:
    """Run a keyring call in a worker thread; a call that blocks past ``timeout`` means locked."""
    timeout = KEYRING_TIMEOUT if timeout is None else timeout
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyring")
    try:
        return pool.submit(call).result(timeout)
    except concurrent.futures.TimeoutError:
        raise KeyringLocked(
            f"The keyring did not answer within {timeout:g} s while {what}: it is probably "
            "locked and waiting for an unlock prompt. Unlock it (log in to your desktop "
            "session, or `gnome-keyring-daemon --unlock`) and try again."
        ) from None
    except keyring.errors.KeyringLocked:
        raise KeyringLocked(
            f"The keyring is locked, so hostnet could not finish {what}. Unlock it and try again."
        ) from None
    except keyring.errors.KeyringError as exc:
        raise KeyringError(f"The keyring failed while {what}: {exc}. Try again.") from None
    finally:
        pool.shutdown(wait=False)


def find_keyring() -> keyring.backend.KeyringBackend | None:
    """The best real keyring backend available now, or None (fail/null/plaintext only)."""

    def detect() -> keyring.backend.KeyringBackend:
        # keyring caches which backends were viable at first use; a keyring may have started
        # (or stopped) since, as in a long-running daemon, so look afresh every time.
        with contextlib.suppress(KeyError, AttributeError):  # nothing cached yet
            keyring.backend.get_all_keyring.reset()
        keyring.core.init_backend()
        return keyring.get_keyring()

    try:
        backend = _bounded(detect, "looking for a keyring")
    except KeyringLocked:
        return None
    return backend if _is_real(backend) else None


def keyring_name(backend: keyring.backend.KeyringBackend) -> str:
    return f"{type(backend).__module__}.{type(backend).__name__}"


class Secrets:
    """One place for secrets: the keyring, an opted-in 0600 file, or this process's memory."""

    def __init__(
        self,
        store: SecretStore,
        paths: Paths,
        backend: keyring.backend.KeyringBackend | None = None,
    ) -> None:
        if store == "keyring" and backend is None:
            raise NoKeyring(no_keyring_message())
        self.store: SecretStore = store
        self.backend = backend
        self._file = paths.state_dir / SECRETS_FILE

    def get(self, name: str) -> dict[str, Any] | None:
        raw: str | None
        if self.store == "keyring":
            assert self.backend is not None
            backend = self.backend
            raw = _bounded(lambda: backend.get_password(SERVICE, name), "reading a secret")
        elif self.store == "file":
            raw = _read_file(self._file).get(name)
        else:
            with _memory_lock:
                raw = _memory.get(name)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def set(self, name: str, value: dict[str, Any]) -> None:
        raw = json.dumps(value, sort_keys=True)
        if self.store == "keyring":
            assert self.backend is not None
            backend = self.backend
            _bounded(lambda: backend.set_password(SERVICE, name, raw), "saving a secret")
        elif self.store == "file":
            entries = _read_file(self._file)
            entries[name] = raw
            _write_file(self._file, entries)
        else:
            with _memory_lock:
                _memory[name] = raw

    def delete(self, name: str) -> None:
        if self.store == "keyring":
            assert self.backend is not None
            backend = self.backend

            def remove() -> None:
                with contextlib.suppress(keyring.errors.PasswordDeleteError):
                    backend.delete_password(SERVICE, name)

            _bounded(remove, "removing a secret")
        elif self.store == "file":
            entries = _read_file(self._file)
            if entries.pop(name, None) is not None:
                _write_file(self._file, entries)
            if not entries:
                with contextlib.suppress(FileNotFoundError):
                    self._file.unlink()
        else:
            with _memory_lock:
                _memory.pop(name, None)


def no_keyring_message() -> str:
    return (
        "No OS keyring is available (keyring found only its fail/null backend), so your "
        "sign-in works for this run but will not be remembered. To remember it, start a "
        "keyring (GNOME Keyring, KWallet) or opt in to a private file with "
        "`hostnet login --store-secrets-in-file`."
    )


def open_secrets(paths: Paths, store: SecretStore | None = None) -> Secrets:
    """Secrets for ``store``; with None, the keyring if there is a real one, else memory."""
    if store == "file":
        return Secrets("file", paths)
    if store == "memory":
        return Secrets("memory", paths)
    backend = find_keyring()
    if backend is None:
        if store == "keyring":
            raise NoKeyring(no_keyring_message())
        return Secrets("memory", paths)
    return Secrets("keyring", paths, backend)


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _write_file(path: Path, entries: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(entries, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
