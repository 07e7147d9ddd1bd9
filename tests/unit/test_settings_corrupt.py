"""Corrupt and odd settings files of many shapes (hypothesis): reading never raises, bad
keys fall back to defaults with a Problem naming them, good keys survive, and a write
afterwards always produces a valid file that still holds every good key and unknown key."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.paths import Paths
from app.settings import (
    SettingsStore,
    current_version,
    read_admin_settings,
    read_user_settings,
    specs,
)
from app.settings.validate import value_error

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from([k for k in specs() if k != "SettingsVersion"])
documents = st.dictionaries(st.one_of(known_keys, st.text(max_size=12)), json_value, max_size=10)


def make_store(tmp_path: Path) -> SettingsStore:
    paths = Paths(tmp_path / "c", tmp_path / "s", tmp_path / "r", tmp_path / "l")
    return SettingsStore(paths, admin_file=tmp_path / "admin.json")


def fresh_dir(tmp_path: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=name, dir=tmp_path))


SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(document=documents)
def test_any_json_object(tmp_path: Path, document: dict[str, Any]) -> None:
    store = make_store(fresh_dir(tmp_path, "doc"))
    store.user_file.parent.mkdir(parents=True)
    # At the current version no migration applies, so every bad value must be reported;
    # older versions' spellings and shapes are covered in test_settings_migrate.
    document = {**document, "SettingsVersion": current_version()}
    store.user_file.write_text(json.dumps(document))
    effective = store.load()
    problem_keys = {p.key for p in effective.problems}
    table = specs()
    for key, spec in table.items():
        if key == "SettingsVersion":
            continue
        if key in document and not spec.admin_only and value_error(spec, document[key]) is None:
            assert effective[key] == document[key]
            assert effective.source(key) == "user"
        else:
            assert effective[key] == spec.default
            if key in document:
                assert key in problem_keys
    # any write leaves a file that reads back with no problems except admin-only keys
    store.set("OidcClientId", "after")
    reread = read_user_settings(store.user_file)
    assert {p.key for p in reread.problems} <= {"SignInRequired"}
    assert reread.values["OidcClientId"] == "after"
    for key, value in document.items():
        if key not in table:
            assert reread.document[key] == value  # unknown keys kept
        elif key != "OidcClientId" and value_error(table[key], value) is None:
            assert reread.document[key] == value  # good keys kept


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes(tmp_path: Path, data: bytes) -> None:
    folder = fresh_dir(tmp_path, "bytes")
    store = make_store(folder)
    store.user_file.parent.mkdir(parents=True)
    store.user_file.write_bytes(data)
    effective = store.load()
    try:
        parsed = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        assert any(p.key is None for p in effective.problems)
        assert all(effective.source(k) == "default" for k in effective)
        if data.strip():
            copies = list(store.user_file.parent.glob("settings-store.json.bad-*"))
            assert [c.read_bytes() for c in copies] == [data]
    store.set("VmBackend", "qemu")
    assert json.loads(store.user_file.read_text())["VmBackend"] == "qemu"


@SETTINGS
@given(document=documents, text_cut=st.integers(min_value=1, max_value=400))
def test_truncated_file(tmp_path: Path, document: dict[str, Any], text_cut: int) -> None:
    """A file cut short (what a non-atomic writer leaves after a crash)."""
    store = make_store(fresh_dir(tmp_path, "cut"))
    store.user_file.parent.mkdir(parents=True)
    text = json.dumps({"HostNetworkingEnabled": True, **document})
    store.user_file.write_text(text[: min(text_cut, len(text) - 1)])
    effective = store.load()
    assert effective["HostNetworkingEnabled"] is False
    assert effective.problems and effective.problems[0].key is None


@SETTINGS
@given(document=st.dictionaries(st.one_of(known_keys, st.text(max_size=12)), json_value))
def test_any_admin_document(tmp_path: Path, document: dict[str, Any]) -> None:
    """Admin entries of any shape: never raises; a key with a malformed entry ends up locked at
    its default with a problem naming it."""
    path = fresh_dir(tmp_path, "admin") / "admin.json"
    path.write_text(json.dumps({"configurationFileVersion": 2, **document}))
    admin = read_admin_settings(path)
    for key in admin.entries:
        assert key in specs()
    for entry in admin.entries.values():
        if entry.malformed:
            assert entry.locked and entry.value == specs()[entry.key].default
            assert entry.key in {p.key for p in admin.problems}
