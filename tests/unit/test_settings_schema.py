"""resources/settings.schema.json: a valid draft 2020-12 schema describing every key, found
at run time from the package (editable install and a built wheel alike)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from app.settings import current_version, resolve_key, specs
from app.settings.schema import REPO_SCHEMA, load_schema, validator
from vm.backends.registry import BACKENDS, backend_names

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = {
    "HostNetworkingEnabled": (bool, False),
    "EnhancedContainerIsolation": (bool, False),
    "UseWindowsContainers": (bool, False),
    "HostNetworkingExposeAllInterfaces": (bool, False),
    "HostNetworkingExcludedPorts": (list, []),
    "HostNetworkingUdpIdleTimeoutSeconds": (int, 60),
    "HostNetworkingDataPath": (str, "auto"),
    "VmBackend": (str, "netns"),
    "VmOptions": (dict, {}),
    "FilesharingDirectories": (list, []),
    "SignInProvider": (str, "docker"),
    "DockerRegistry": (str, "https://registry-1.docker.io"),
    "OidcIssuer": (str, ""),
    "OidcClientId": (str, ""),
    "SettingsVersion": (int, current_version()),
    "SignInRequired": (bool, False),
    "ContainerEngineEnabled": (bool, False),
}


def test_schema_is_valid_2020_12() -> None:
    schema = json.loads(REPO_SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert load_schema() == with_registry_enum(schema)


def with_registry_enum(schema: dict[str, Any]) -> dict[str, Any]:
    """The file plus what the backend registry contributes (VmBackend's enum): nothing else."""
    schema["properties"]["VmBackend"]["enum"] = backend_names()
    return schema


def test_vm_backend_enum_is_the_registry() -> None:
    assert specs()["VmBackend"].enum == tuple(BACKENDS)
    assert set(BACKENDS) == {"netns", "qemu", "attach"}
    assert specs()["VmBackend"].default in BACKENDS


def test_every_key_has_type_default_description_and_restart_flag() -> None:
    table = specs()
    assert set(table) == set(REQUIRED_KEYS)
    for key, (kind, default) in REQUIRED_KEYS.items():
        spec = table[key]
        assert isinstance(spec.default, kind) and spec.default == default, key
        assert spec.description and "\n" not in spec.description
        assert isinstance(spec.schema.get("x-restart-required"), bool), key
        assert Draft202012Validator(spec.schema).is_valid(spec.default), key
        assert Draft202012Validator(spec.schema).is_valid(spec.example), key
    restarting = {"VmBackend", "VmOptions", "FilesharingDirectories"}
    assert {k for k, s in table.items() if s.restart_required} == restarting
    assert {k for k, s in table.items() if s.admin_only} == {"SignInRequired"}


def test_defaults_document_validates_and_unknown_keys_are_allowed() -> None:
    doc = {key: spec.default for key, spec in specs().items()}
    doc["SomethingElse"] = {"x": 1}
    assert list(validator().iter_errors(doc)) == []


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("HostNetworkingEnabled", "HostNetworkingEnabled"),
        ("hostNetworkingEnabled", "HostNetworkingEnabled"),
        ("HOSTNETWORKINGENABLED", "HostNetworkingEnabled"),
        ("vmbackend", "VmBackend"),
        ("nope", None),
    ],
)
def test_resolve_key(name: str, key: str | None) -> None:
    assert resolve_key(name) == key


def test_package_copy_is_the_resource() -> None:
    packaged = ROOT / "app" / "settings" / "settings.schema.json"
    assert packaged.is_symlink()
    assert packaged.resolve() == REPO_SCHEMA.resolve()


def test_build_ships_the_schema(tmp_path: Path) -> None:
    """setuptools' build_py (what a wheel or sdist install runs) follows the symlink: the
    built package holds the schema's text as package data of app.settings. Built from a
    copy of the source so the work tree is left alone."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("app", "vm", "proxy", "resources"):
        if (ROOT / name).exists():
            shutil.copytree(
                ROOT / name,
                source / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
    build = tmp_path / "build"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import setup; "
            "sys.argv = ['setup.py', '-q', 'build_py', '--build-lib', sys.argv[1]]; setup()",
            str(build),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr
    shipped = build / "app" / "settings" / "settings.schema.json"
    assert not shipped.is_symlink()
    assert with_registry_enum(json.loads(shipped.read_text())) == load_schema()
