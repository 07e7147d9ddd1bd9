"""Turn the text a person typed (CLI ``settings set KEY VALUE``) into a value for KEY."""

from __future__ import annotations

import json
from typing import Any

from app.settings.errors import SettingValueError
from app.settings.problems import Problem
from app.settings.schema import SettingSpec
from app.settings.validate import example_text, value_error

TRUE_WORDS = frozenset({"true", "on", "1", "yes"})
FALSE_WORDS = frozenset({"false", "off", "0", "no"})


class _Unparsable(ValueError):
    pass


def _parse(spec: SettingSpec, text: str) -> Any:
    word = text.strip()
    if spec.json_type == "boolean":
        if word.lower() in TRUE_WORDS:
            return True
        if word.lower() in FALSE_WORDS:
            return False
        raise _Unparsable
    if spec.json_type == "integer":
        try:
            return int(word)
        except ValueError:
            raise _Unparsable from None
    if spec.json_type == "number":
        try:
            return int(word)
        except ValueError:
            pass
        try:
            return float(word)
        except ValueError:
            raise _Unparsable from None
    if spec.json_type == "string":
        if spec.enum:
            for option in spec.enum:
                if option.lower() == word.lower():
                    return option
        return text
    if spec.json_type == "array":
        if word.startswith("["):
            try:
                return json.loads(word)
            except json.JSONDecodeError:
                raise _Unparsable from None
        items: list[int | str] = []
        for part in word.split(","):
            part = part.strip()
            if part:
                items.append(int(part) if part.isdigit() else part)
        return items
    if spec.json_type == "object":
        try:
            return json.loads(word)
        except json.JSONDecodeError:
            raise _Unparsable from None
    raise _Unparsable


def parse_value(spec: SettingSpec, text: str) -> Any:
    """The value TEXT stands for; SettingValueError names the key, the type and an example."""
    fix = f"Example: `hostnet settings set {spec.key} {_quoted(example_text(spec))}`."
    try:
        value = _parse(spec, text)
    except _Unparsable:
        raise SettingValueError(
            Problem(spec.key, f"{text!r} is not {spec.type_name}.", fix)
        ) from None
    error = value_error(spec, value)
    if error is not None:
        raise SettingValueError(Problem(spec.key, f"{error}.", fix))
    return value


def _quoted(text: str) -> str:
    return f"'{text}'" if any(c in text for c in ' {}[]"') else text
