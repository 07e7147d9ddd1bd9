"""HTTP for sign-in: a bounded time for every request, and plain-language errors.

A sign-in server that is down or hangs gives ``ServerUnavailable`` within ``timeout`` seconds
(connect, read and the whole request each bounded), never a traceback or an endless wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from app.signin.errors import ServerUnavailable

DEFAULT_TIMEOUT = 10.0
T = TypeVar("T")


def client(timeout: float = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": "hostnet-signin"},
        trust_env=False,
    )


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


async def bounded(what: str, url: str, awaitable: Awaitable[T], timeout: float) -> T:
    """Await one exchange with a server, turning every transport failure into ServerUnavailable."""
    host = host_of(url)
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except (TimeoutError, httpx.TimeoutException):
        raise ServerUnavailable(
            f"{what}: {host} did not answer within {timeout:g} s. "
            "Check your network or try again later; nothing was changed."
        ) from None
    except httpx.ConnectError:
        raise ServerUnavailable(
            f"{what}: cannot connect to {host}. Check the address and your network; "
            "nothing was changed."
        ) from None
    except httpx.HTTPError as exc:
        raise ServerUnavailable(
            f"{what}: the connection to {host} failed ({type(exc).__name__}). Try again later."
        ) from None
