"""The settings watcher sees edits to the user and admin files (atomic renames and in-place
writes), reports the changed keys and restarts, and stays quiet on a no-op touch."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from app.paths import Paths
from app.settings import SettingsChange, SettingsStore, watch_settings

INTERVAL = 0.05


def make_store(tmp_path: Path) -> SettingsStore:
    paths = Paths(tmp_path / "c", tmp_path / "s", tmp_path / "r", tmp_path / "l")
    return SettingsStore(paths, admin_file=tmp_path / "admin.json")


async def next_change(changes: AsyncIterator[SettingsChange], timeout: float = 5) -> SettingsChange:
    return await asyncio.wait_for(anext(changes), timeout)


async def test_sees_store_writes_hand_edits_and_admin_locks(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    changes = watch_settings(store, interval=INTERVAL)
    first = asyncio.ensure_future(next_change(changes))
    await asyncio.sleep(INTERVAL * 3)  # let the watcher take its first look

    await asyncio.to_thread(store.set, "HostNetworkingEnabled", True)
    change = await first
    assert change.changed == ("HostNetworkingEnabled",)
    assert change.effective["HostNetworkingEnabled"] is True
    assert change.restart_required is False
    assert store.user_file in change.files

    # an in-place edit by hand (same inode)
    doc = json.loads(store.user_file.read_text())
    doc["VmBackend"] = "qemu"
    with open(store.user_file, "r+") as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(doc))
    change = await next_change(changes)
    assert change.changed == ("VmBackend",)
    assert change.restart_required is True

    # the administrator locks ECI on: the gate must now refuse
    store.admin_file.write_text(
        json.dumps(
            {
                "configurationFileVersion": 2,
                "enhancedContainerIsolation": {"locked": True, "value": True},
            }
        )
    )
    change = await next_change(changes)
    assert change.changed == ("EnhancedContainerIsolation",)
    assert change.effective.source("EnhancedContainerIsolation") == "admin-locked"
    assert change.effective.gate(signed_in=True).state == "refused"
    await changes.aclose()


async def test_touch_without_change_yields_nothing_and_bad_edit_yields_problems(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    store.set("OidcClientId", "x")
    changes = watch_settings(store, interval=INTERVAL)
    pending = asyncio.ensure_future(next_change(changes))
    await asyncio.sleep(INTERVAL * 3)
    os.utime(store.user_file)
    await asyncio.sleep(INTERVAL * 6)
    assert not pending.done()
    store.user_file.write_text("{broken")
    change = await pending
    assert change.problems_changed
    assert change.changed == ("OidcClientId",)  # back to its default while the file is bad
    assert change.effective["OidcClientId"] == ""
    await changes.aclose()


async def test_a_change_taken_directly_then_undone_in_the_file_is_reported(
    tmp_path: Path,
) -> None:
    """The daemon takes an API change (off) at once; the file is back to on before the
    watcher's next look. Compared with its own last reading (on), the watcher would see
    nothing and the daemon would stay off while the file says on (a CI failure)."""
    store = make_store(tmp_path)
    store.set("HostNetworkingEnabled", True)
    holding = [store.load()]
    changes = watch_settings(store, interval=1.0, initial=holding[0], held=lambda: holding[0])
    pending = asyncio.ensure_future(next_change(changes))
    await asyncio.sleep(0.2)  # the first look is taken; the next is a second away
    assert not pending.done()

    taken = await asyncio.to_thread(store.set, "HostNetworkingEnabled", False)
    holding[0] = taken.effective  # taken by the caller itself, as the daemon's API does
    doc = json.loads(store.user_file.read_text())
    doc["HostNetworkingEnabled"] = True
    store.user_file.write_text(json.dumps(doc))

    change = await pending
    assert change.changed == ("HostNetworkingEnabled",)
    assert change.effective["HostNetworkingEnabled"] is True
    await changes.aclose()
