"""Replace a file so that a reader, or a crash at any instant, sees the whole old or the whole new.

Temp file in the same folder, write, fsync, rename over the target, fsync the folder. The new
file keeps the old one's permission bits, or gets 0600 when there was none. Stdlib only, so a
test can load this module alone in a child process and SIGKILL it mid-write.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path

TEMP_MARK = ".tmp-"
STALE_TEMP_SECONDS = 60.0


def temp_prefix(target: Path) -> str:
    return f".{target.name}{TEMP_MARK}"


def write_atomically(target: Path, data: bytes, default_mode: int = 0o600) -> None:
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = default_mode
    tmp = folder / f"{temp_prefix(target)}{os.getpid()}-{time.monotonic_ns()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(target: Path, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete temp files a killed writer left behind (only ones older than OLDER_THAN seconds)."""
    removed: list[Path] = []
    now = time.time()
    prefix = temp_prefix(target)
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
