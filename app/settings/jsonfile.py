"""Read a JSON settings file strictly, and keep a copy of one that is broken."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from app.settings.atomic import write_atomically
from proxy.errors import HostnetError


class BadJson(HostnetError, ValueError):
    """The bytes are not a JSON document hostnet accepts; the message says where and why."""


def _no_constants(name: str) -> Any:
    raise BadJson(f"{name} is not allowed in a settings file")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson(f"the number {text} is too large")
    return value


def parse_json(data: bytes) -> Any:
    """Parse DATA (UTF-8, a BOM allowed); raises BadJson with line and column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadJson(f"it is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise BadJson("the file is empty")
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BadJson(f"it is not valid JSON: {exc.msg} at {where}") from None
    except RecursionError:
        raise BadJson("it is nested too deeply") from None


def dump_json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def keep_bad_copy(path: Path, data: bytes) -> Path | None:
    """Save DATA as ``<name>.bad-<UTC time>`` beside PATH, once per distinct content.

    Returns the copy (an existing identical one if there is one), or None when there is
    nothing worth keeping (empty) or the folder is not writable.
    """
    if not data.strip():
        return None
    prefix = f"{path.name}.bad-"
    try:
        for entry in sorted(os.scandir(path.parent), key=lambda e: e.name):
            if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                try:
                    if Path(entry.path).read_bytes() == data:
                        return Path(entry.path)
                except OSError:
                    continue
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        copy = path.with_name(prefix + stamp)
        n = 1
        while copy.exists():
            n += 1
            copy = path.with_name(f"{prefix}{stamp}-{n}")
        write_atomically(copy, data)
    except OSError:
        return None
    return copy
