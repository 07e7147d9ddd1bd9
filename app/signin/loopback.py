"""The loopback redirect for the browser sign-in (RFC 8252 section 7.3).

A one-shot HTTP server on 127.0.0.1 at an ephemeral port receives the authorization response
(``/callback?code=...&state=...``). It answers the browser with a short page and hands the
query to the waiting flow; requests with another state are refused and ignored.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

CALLBACK_PATH = "/callback"
_DONE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>hostnet</title>"
    "<p>{message}</p><p>You can close this window and return to hostnet.</p>"
)


class LoopbackRedirect:
    """Use as ``async with LoopbackRedirect(state) as r``, then ``r.uri`` and ``await r.wait()``."""

    def __init__(self, state: str) -> None:
        self._state = state
        self._result: asyncio.Future[dict[str, str]] | None = None
        self._runner: web.AppRunner | None = None
        self.uri = ""

    async def __aenter__(self) -> LoopbackRedirect:
        self._result = asyncio.get_running_loop().create_future()
        app = web.Application()
        app.router.add_get(CALLBACK_PATH, self._callback)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _callback(self, request: web.Request) -> web.Response:
        query = {k: v for k, v in request.query.items()}
        assert self._result is not None
        if query.get("state") != self._state:
            return web.Response(
                status=400,
                text=_DONE_PAGE.format(message="This sign-in link is stale or not for hostnet."),
                content_type="text/html",
            )
        if not self._result.done():
            self._result.set_result(query)
        ok = "error" not in query
        message = "Signed in." if ok else "Sign-in did not complete."
        return web.Response(text=_DONE_PAGE.format(message=message), content_type="text/html")

    async def wait(self) -> dict[str, str]:
        """The authorization response's query parameters."""
        assert self._result is not None
        return await asyncio.shield(self._result)
