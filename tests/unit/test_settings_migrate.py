"""Migration from older layouts and Docker's camelCase spellings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.settings import current_version, read_user_settings
from app.settings.migrate import migrate


def test_current_version_is_untouched() -> None:
    doc = {"SettingsVersion": current_version(), "VmBackend": "qemu", "X": 1}
    result = migrate(doc)
    assert result.document == doc
    assert not result.changed
    assert result.document is not doc


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("hostNetworkingEnabled", "HostNetworkingEnabled"),
        ("enhancedContainerIsolation", "EnhancedContainerIsolation"),
        ("useWindowsContainers", "UseWindowsContainers"),
        ("vmBackend", "VmBackend"),
    ],
)
def test_camel_case_is_renamed(old: str, new: str) -> None:
    result = migrate({old: True, "unrelatedCamel": 3})
    assert new in result.document and old not in result.document
    assert result.document["unrelatedCamel"] == 3
    assert result.document["SettingsVersion"] == current_version()
    assert result.from_version is None
    assert any(old in note for note in result.notes)


def test_canonical_spelling_wins_over_old_one() -> None:
    result = migrate({"hostNetworkingEnabled": True, "HostNetworkingEnabled": False})
    assert result.document["HostNetworkingEnabled"] is False
    assert "hostNetworkingEnabled" not in result.document


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22, 8000-8010", [22, "8000-8010"]),
        ("", []),
        ("80;443", [80, 443]),
        ("9000 - 9005", ["9000-9005"]),
    ],
)
def test_version_1_port_string_becomes_a_list(text: str, expected: list[object]) -> None:
    result = migrate({"SettingsVersion": 1, "HostNetworkingExcludedPorts": text})
    assert result.document["HostNetworkingExcludedPorts"] == expected
    assert result.document["SettingsVersion"] == current_version()


def test_version_2_port_string_is_not_migrated_but_reported(tmp_path: Path) -> None:
    path = tmp_path / "settings-store.json"
    path.write_text(json.dumps({"SettingsVersion": 2, "HostNetworkingExcludedPorts": "22"}))
    user = read_user_settings(path)
    assert "HostNetworkingExcludedPorts" in user.bad_keys


def test_newer_version_is_flagged_and_kept() -> None:
    result = migrate({"SettingsVersion": current_version() + 1, "New": 1})
    assert result.newer
    assert result.document["SettingsVersion"] == current_version() + 1


def test_docker_desktop_style_file_reads(tmp_path: Path) -> None:
    """An old Docker Desktop settings.json shape: camelCase keys among many unknown ones."""
    path = tmp_path / "settings-store.json"
    path.write_text(
        json.dumps(
            {
                "autoStart": False,
                "cpus": 4,
                "enhancedContainerIsolation": True,
                "hostNetworkingEnabled": True,
                "memoryMiB": 8092,
                "useWindowsContainers": False,
            }
        )
    )
    user = read_user_settings(path)
    assert user.problems == []
    assert user.values["EnhancedContainerIsolation"] is True
    assert user.values["HostNetworkingEnabled"] is True
    assert user.document["cpus"] == 4
