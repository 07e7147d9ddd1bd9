"""Check one setting's value against the schema, plus what JSON Schema cannot say."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from app.settings.ports import port_range_error
from app.settings.schema import SettingSpec


def value_error(spec: SettingSpec, value: Any) -> str | None:
    """Why VALUE is not acceptable for SPEC's key, or None when it is fine."""
    validator = Draft202012Validator(spec.schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        shown = json.dumps(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{shown} is not {spec.type_name}"
    if spec.key == "HostNetworkingExcludedPorts":
        for item in value:
            problem = port_range_error(item)
            if problem:
                return problem
    return None


def example_text(spec: SettingSpec) -> str:
    example = spec.example
    if isinstance(example, str):
        return example
    if isinstance(example, list):
        return ",".join(str(item) for item in example)
    return json.dumps(example)
