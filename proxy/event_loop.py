"""The event loop hostnet runs on: uvloop where it is installed, asyncio's own otherwise."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop if available, else on the default loop."""
    if uvloop_available():
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def raise_fd_limit(wanted: int = 1 << 20) -> int:
    """Raise the soft open-file limit towards ``wanted`` (bounded by the hard limit).

    Each forwarded TCP connection holds two sockets and two pipes, so the default soft
    limit of 1,024 would cap a relay at about 170 connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
