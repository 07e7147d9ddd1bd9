"""Follow the settings files while the daemon runs.

Polls each file's identity (inode, size, mtime, ctime) every ``interval`` seconds: cheap,
stdlib only, and it sees both atomic renames and in-place edits. When something changed it
reloads and yields a SettingsChange, but only if the effective settings or the problems
actually differ (a touch with no change yields nothing).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from app.settings.effective import EffectiveSettings
from app.settings.store import SettingsChange, SettingsStore

DEFAULT_INTERVAL = 0.5

Signature = tuple[int, int, int, int] | None


def file_signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


async def watch_settings(
    store: SettingsStore,
    *,
    interval: float = DEFAULT_INTERVAL,
    initial: EffectiveSettings | None = None,
    held: Callable[[], EffectiveSettings | None] | None = None,
) -> AsyncIterator[SettingsChange]:
    """Yield a SettingsChange each time the settings in effect (or their problems) change.

    INITIAL is what the caller already holds (loaded now when None); changes are reported
    relative to it, then to the last one yielded. A change made after the caller loaded
    INITIAL but before the watch began is reported first: once the watch holds the files'
    signatures it reads them again, so nothing falls between the caller's reading and the
    watch.

    HELD, for a caller that also takes changes another way (the daemon applies a change
    through its API at once), returns what that caller holds now, and each reading is
    compared with it instead. Compared with the last reading, a file that goes A, then B
    (taken directly), then back to A between two looks would look unchanged, and the caller
    would keep B while the file says A.
    """
    loop = asyncio.get_running_loop()
    files = (store.user_file, store.admin_file)
    signatures = {path: file_signature(path) for path in files}
    current = initial if initial is not None else await loop.run_in_executor(None, store.load)
    moved: list[Path] = list(files) if initial is not None else []
    while True:
        if moved:
            fresh = await loop.run_in_executor(None, store.load)
            base = (held() if held is not None else None) or current
            changed = fresh.changed_keys(base)
            problems_changed = fresh.problems != base.problems
            if changed or problems_changed:
                yield SettingsChange(
                    effective=fresh,
                    changed=changed,
                    restart_required=fresh.restart_required_since(base),
                    problems_changed=problems_changed,
                    files=tuple(moved),
                )
            current = fresh
        await asyncio.sleep(interval)
        now = {path: file_signature(path) for path in files}
        moved = [path for path in files if now[path] != signatures[path]]
        signatures = now
