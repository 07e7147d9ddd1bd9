"""JSON values with a bound on encoded size and nesting depth, for Request and Response."""

from __future__ import annotations

import json
import math
from typing import Any

from proxy.wire.errors import ErrorCode, ProtocolError
from proxy.wire.limits import MAX_JSON_BYTES, MAX_JSON_DEPTH

JsonValue = Any
"""A value json.loads can return: dict, list, str, int, float, bool or None."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text[:20]} is out of range")
    return number


def nesting_depth(text: bytes) -> int:
    """Deepest bracket nesting in encoded JSON, ignoring brackets inside strings.

    Checked before json.loads so a deeply nested input cannot exhaust the recursion limit.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def encode_json(value: JsonValue, *, what: str, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """Encode `value` compactly; ProtocolError(local) when it is not JSON or too large."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"{what} is not a JSON value: {exc}", local=True
        ) from None
    if len(text) > max_bytes:
        raise ProtocolError(
            ErrorCode.LIMIT,
            f"{what} encodes to {len(text)} bytes, above the limit of {max_bytes}",
            local=True,
        )
    if nesting_depth(text) > MAX_JSON_DEPTH:
        raise ProtocolError(
            ErrorCode.LIMIT, f"{what} nests deeper than {MAX_JSON_DEPTH} levels", local=True
        )
    return text


def decode_json(text: bytes, *, what: str, max_bytes: int = MAX_JSON_BYTES) -> JsonValue:
    """Decode received JSON; ProtocolError when it is malformed, too large or too deep."""
    if len(text) > max_bytes:
        raise ProtocolError(
            ErrorCode.LIMIT, f"{what} is {len(text)} bytes, above the limit of {max_bytes}"
        )
    if nesting_depth(text) > MAX_JSON_DEPTH:
        raise ProtocolError(ErrorCode.LIMIT, f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(
            text.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} is not valid JSON: {exc}") from None
