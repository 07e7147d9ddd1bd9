"""The per-VM secret file: 32 random bytes, mode 0600, created atomically, checked on load."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from proxy.errors import HostnetError

SECRET_BYTES = 32


class SecretFileError(HostnetError):
    """The secret file is missing, unsafe or malformed; the message names the fix."""


def _read_checked(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecretFileError(
            f"the secret file {path} does not exist; create it with load_or_create_secret() "
            "or copy the daemon's secret file there (mode 0600)"
        ) from None
    except PermissionError:
        raise SecretFileError(
            f"cannot read the secret file {path}: permission denied; run as its owner"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"the secret file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise SecretFileError(
                f"the secret file {path} is readable or writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        if info.st_uid != os.geteuid():
            raise SecretFileError(
                f"the secret file {path} belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.geteuid()}); recreate it as this user"
            )
        data = os.read(fd, SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != SECRET_BYTES:
        raise SecretFileError(
            f"the secret file {path} holds {len(data)} bytes, not {SECRET_BYTES}; "
            "delete it to have a new one created (then give the VM the new one)"
        )
    return data


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """Read an existing secret file; SecretFileError if missing, unsafe or the wrong size."""
    return _read_checked(Path(path))


def load_or_create_secret(path: str | os.PathLike[str]) -> bytes:
    """Read the secret at `path`, creating it (and a 0700 parent) first if it does not exist.

    Creation writes a temporary file with mode 0600, fsyncs it and hard-links it into place,
    so a concurrent creator never sees a partial file and never replaces an existing secret.
    """
    target = Path(path)
    if target.exists():
        return _read_checked(target)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, target)
    except FileExistsError:
        pass  # someone else created it first: use theirs
    finally:
        temp.unlink()
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return _read_checked(target)
