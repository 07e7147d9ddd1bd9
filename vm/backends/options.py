"""Checking a backend's ``VmOptions`` against the JSON schema its registry entry declares.

The registry's schemas are plain JSON Schema, which the settings layer validates with
``jsonschema``; the VM layer must run on the standard library alone (the agent's zipapp),
so the backend re-checks the same schema here with the few keywords those schemas use:
``type``, ``items``, ``enum``, ``minimum``, ``maximum``, ``required`` and ``additionalProperties``.
"""

from __future__ import annotations

import json
from typing import Any

from vm.backends.errors import VMError

_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def check_options(backend: str, schema: dict[str, Any], options: object) -> dict[str, Any]:
    """``options`` if it fits ``schema``; a VMError naming the bad key and the fix otherwise."""
    example = json.dumps(schema.get("examples", [{}])[0])
    fix = f"set it with `hostnet settings set VmOptions '{example}'`"
    if not isinstance(options, dict):
        raise VMError(f"VmOptions for the {backend} backend must be a JSON object", fix)
    properties: dict[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in options:
            raise VMError(f"the {backend} backend needs VmOptions {key}", fix)
    for key, value in options.items():
        rule = properties.get(key)
        if rule is None:
            if schema.get("additionalProperties", True) is False:
                known = ", ".join(sorted(properties)) or "no options"
                raise VMError(
                    f"VmOptions has {key!r}, which the {backend} backend does not know "
                    f"(it reads {known})",
                    fix,
                )
            continue
        problem = _value_problem(rule, value)
        if problem:
            raise VMError(f"VmOptions {key}={json.dumps(value)} {problem}", fix)
    return options


def _value_problem(rule: dict[str, Any], value: object) -> str:
    wanted = rule.get("type")
    if wanted is not None:
        types = _TYPES[wanted]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"is not {'an' if wanted[0] in 'aeiou' else 'a'} {wanted}"
    if isinstance(value, list) and "items" in rule:
        for item in value:
            problem = _value_problem(rule["items"], item)
            if problem:
                return f"has {json.dumps(item)}, which {problem}"
    if "enum" in rule and value not in rule["enum"]:
        return "is not one of " + ", ".join(json.dumps(v) for v in rule["enum"])
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in rule and value < rule["minimum"]:
            return f"is below the minimum {rule['minimum']}"
        if "maximum" in rule and value > rule["maximum"]:
            return f"is above the maximum {rule['maximum']}"
    return ""
