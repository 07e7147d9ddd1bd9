"""The settings schema: where it lives, and the per-key facts read from it.

``resources/settings.schema.json`` is the one source of truth. ``app/settings/settings.schema.json``
is a symlink to it, so the schema is package data of ``app.settings``: an editable install, a
wheel (setuptools copies the link's target into the wheel, see ``[tool.setuptools.package-data]``)
and a PyInstaller bundle all find it through ``importlib.resources``. A checkout whose symlinks
were flattened falls back to the repository's ``resources/`` folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from vm.backends.registry import backend_names

SCHEMA_NAME = "settings.schema.json"
REPO_SCHEMA = Path(__file__).resolve().parents[2] / "resources" / SCHEMA_NAME

JSON_TYPE_NAMES = {
    "boolean": "a boolean (true or false)",
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "array": "a list",
    "object": "a JSON object",
}


@dataclass(frozen=True)
class SettingSpec:
    """One key of settings-store.json, as the schema describes it."""

    key: str
    json_type: str
    default: Any
    description: str
    restart_required: bool
    admin_only: bool
    read_only: bool
    aliases: tuple[str, ...]
    example: Any
    enum: tuple[str, ...] | None
    schema: dict[str, Any]

    @property
    def type_name(self) -> str:
        if self.enum:
            return "one of " + ", ".join(repr(v) for v in self.enum)
        if self.key == "HostNetworkingExcludedPorts":
            return 'a list of ports (1-65535) or port ranges like "8000-8010"'
        return JSON_TYPE_NAMES.get(self.json_type, self.json_type)

    @property
    def user_settable(self) -> bool:
        return not (self.admin_only or self.read_only)


def _schema_text() -> str:
    try:
        return resources.files("app.settings").joinpath(SCHEMA_NAME).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return REPO_SCHEMA.read_text(encoding="utf-8")


@cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_schema_text())
    # The backends' one home is their registry: the enum comes from it, not from the file.
    schema["properties"]["VmBackend"]["enum"] = backend_names()
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


@cache
def specs() -> dict[str, SettingSpec]:
    """Every known key, in the schema's order."""
    out: dict[str, SettingSpec] = {}
    for key, prop in load_schema()["properties"].items():
        enum = prop.get("enum")
        out[key] = SettingSpec(
            key=key,
            json_type=prop["type"],
            default=prop["default"],
            description=prop["description"],
            restart_required=bool(prop.get("x-restart-required", False)),
            admin_only=bool(prop.get("x-admin-only", False)),
            read_only=bool(prop.get("x-read-only", False)),
            aliases=tuple(prop.get("x-aliases", ())),
            example=prop.get("x-example", prop["default"]),
            enum=tuple(enum) if enum else None,
            schema=prop,
        )
    return out


def current_version() -> int:
    return int(specs()["SettingsVersion"].default)


@cache
def alias_map() -> dict[str, str]:
    """Older spellings (Docker's camelCase) to the canonical key."""
    return {alias: spec.key for spec in specs().values() for alias in spec.aliases}


def resolve_key(name: str) -> str | None:
    """The canonical key for NAME: exact, an alias, or a unique case-insensitive match."""
    table = specs()
    if name in table:
        return name
    if name in alias_map():
        return alias_map()[name]
    folded = [key for key in table if key.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None
