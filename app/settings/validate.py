"""Check one setting's value against the schema, plus what JSON Schema cannot say."""

from __future__ import annotations

import json
import math
from typing import Any

from jsonschema import Draft202012Validator

from app.settings.ports import port_range_error
from app.settings.schema import JSON_TYPE_NAMES, SettingSpec

_BOUNDS = {
    "minimum": "too small: it must be at least {}",
    "exclusiveMinimum": "too small: it must be more than {}",
    "maximum": "too large: it must be at most {}",
    "exclusiveMaximum": "too large: it must be less than {}",
}


def type_words(json_type: str) -> str:
    return JSON_TYPE_NAMES.get(json_type, json_type)


def bound_text(validator: str, limit: Any) -> str | None:
    """ "too small: it must be at least 1" for a failed bound, None for other failures."""
    template = _BOUNDS.get(validator)
    return template.format(limit) if template is not None else None


def shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except ValueError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def value_error(spec: SettingSpec, value: Any) -> str | None:
    """Why VALUE is not acceptable for SPEC's key, or None when it is fine."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not {spec.type_name}"
    if spec.key == "HostNetworkingExcludedPorts" and isinstance(value, list):
        for item in value:
            problem = port_range_error(item)
            if problem:
                return problem
    errors = list(Draft202012Validator(spec.schema).iter_errors(value))
    if not errors:
        return None
    for error in errors:
        bound = bound_text(str(error.validator), error.validator_value)
        if bound is not None and not error.absolute_path:
            return f"{shown(value)} is {bound}"
        if error.validator == "pattern" and not error.absolute_path:
            return f"{shown(value)} does not have the form of {example_text(spec)}"
    return f"{shown(value)} is not {spec.type_name}"


def example_text(spec: SettingSpec) -> str:
    example = spec.example
    if isinstance(example, str):
        return example
    if isinstance(example, list):
        return ",".join(str(item) for item in example)
    return json.dumps(example)
