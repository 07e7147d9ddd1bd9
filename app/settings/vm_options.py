"""``VmOptions`` checked against the options schema of the backend it is for.

Each backend's spec in ``vm.backends.registry`` carries the JSON schema of the options it
reads. A change to ``VmOptions`` or ``VmBackend`` is checked here against the backend that
will run (the one set in the same change, else the one in effect), so the CLI, the control
API and the app refuse the same values with the same words.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from app.settings.problems import Problem
from app.settings.validate import bound_text, shown, type_words
from vm.backends.registry import BACKENDS, BackendSpec

OPTIONS = "VmOptions"
BACKEND = "VmBackend"


def backend_specs() -> tuple[BackendSpec, ...]:
    """Every backend, in the registry's order."""
    return tuple(BACKENDS.values())


def backend_spec(name: str) -> BackendSpec | None:
    return BACKENDS.get(name)


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def options_schema(backend: str) -> dict[str, Any]:
    spec = backend_spec(backend)
    return spec.options_schema if spec is not None else {"type": "object"}


def option_error(backend: str, name: str, value: Any) -> str | None:
    """Why VALUE is not acceptable for one option NAME of BACKEND, or None."""
    schema = options_schema(backend)
    prop = schema.get("properties", {}).get(name)
    if prop is None:
        return _unknown(backend, name, schema)
    return _first_error(prop, value, name)


def vm_options_error(backend: str, options: Any) -> str | None:
    """Why OPTIONS do not fit BACKEND, or None when they do."""
    spec = backend_spec(backend)
    if spec is None:
        return None  # an unknown backend is VmBackend's own error
    if not isinstance(options, dict):
        return f"{shown(options)} is not a JSON object"
    schema = spec.options_schema
    for name, value in options.items():
        error = option_error(backend, name, value)
        if error is not None:
            return error
    missing = [name for name in schema.get("required", ()) if name not in options]
    if missing:
        return f"the {backend} backend needs {_and(missing)}"
    return None


def vm_options_problem(backend: str, options: Any, *, key: str = OPTIONS) -> Problem | None:
    """The refusal for OPTIONS under BACKEND, with the fix (an example that fits), or None."""
    error = vm_options_error(backend, options)
    if error is None:
        return None
    example = json.dumps(options_example(backend, _first_bad(backend, options)))
    fix = f"Example: `hostnet settings set {OPTIONS} '{example}'`"
    if key == BACKEND:
        fix = f"Set both at once: `hostnet settings set {BACKEND} {backend} {OPTIONS} '{example}'`"
    return Problem(key, f"{OPTIONS} for the {backend} backend: {error}.", fix + ".")


def options_example(backend: str, about: str | None = None) -> dict[str, Any]:
    """Options that fit BACKEND: each required option's example, else the option ABOUT
    (the one that was wrong) or a first one to show."""
    spec = backend_spec(backend)
    if spec is None:
        return {}
    schema = spec.options_schema
    props: dict[str, Any] = schema.get("properties", {})
    examples = schema.get("examples") or [{}]
    first = [about] if about in props else list(examples[0])[:1] or list(props)[:1]
    names = list(schema.get("required", ())) or first
    return {name: examples[0].get(name, _example(props[name])) for name in names if name in props}


def _first_bad(backend: str, options: Any) -> str | None:
    if not isinstance(options, dict):
        return None
    return next((name for name, v in options.items() if option_error(backend, name, v)), None)


def _example(prop: dict[str, Any]) -> Any:
    if prop.get("examples"):
        return prop["examples"][0]
    if prop.get("enum"):
        return prop["enum"][0]
    if prop.get("type") in ("integer", "number"):
        return prop.get("minimum", 1)
    return "..."


def _first_error(prop: dict[str, Any], value: Any, name: str) -> str | None:
    errors = list(Draft202012Validator(prop).iter_errors(value))
    if not errors:
        return None
    for error in errors:
        bound = bound_text(str(error.validator), error.validator_value)
        if bound is not None:
            return f"{name}={shown(value)} is {bound}"
    if prop.get("enum"):
        return f"{name}={shown(value)}: use {_or([json.dumps(v) for v in prop['enum']])}"
    if prop.get("pattern") and isinstance(value, str):
        return f"{name}={shown(value)} is not valid: {prop.get('description', name)}"
    return f"{name}={shown(value)} is not {type_words(str(prop.get('type', 'value')))}"


def _unknown(backend: str, name: str, schema: dict[str, Any]) -> str:
    known = sorted(schema.get("properties", {}))
    if not known:
        return f"it takes no options, and {name!r} is one"
    return f"there is no option {name!r}; it takes {_and(known)}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
