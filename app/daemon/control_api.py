"""The daemon's control API: HTTP+JSON on a unix socket (mode 0600) in HOSTNET_HOME.

    GET  /v1/status            state, reasons, VM and agent, settings problems
    GET  /v1/ports             every forwarded port with its state and counters
    GET  /v1/settings          effective settings: value, source, lock, problems
    PUT  /v1/settings          {"Key": value, ...}: checked, locks honoured, written atomically,
                               applied before the answer
    DELETE /v1/settings/KEY    forget the user's value for KEY (back to the default)
    POST /v1/session           {"signed_out": bool}: someone signed in or out; the daemon looks
                               again at once; {"signed_in", "note"}
    POST /v1/restart           restart forwarding (applies settings that need it)
    POST /v1/shutdown          stop forwarding and the daemon
    POST /v1/vm/exec           {"argv": [...], "detach": bool, "timeout": s, "cwd": path}: run a
                               command in the VM through its agent; {"exit", "stdout", "stderr"}
                               or, detached, {"pid", "log"}
    POST /v1/vm/kill           {"pid": N, "signal": "TERM"}: signal a detached command
    GET  /v1/events            Server-Sent Events: status, port, ports, settings, resync

``curl --unix-socket $HOSTNET_HOME/run/control.sock http://hostnet/v1/status`` works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from app.daemon.agent_link import REQUEST_TIMEOUT
from app.daemon.http_log import http_server_logger, one_line, parse_error
from app.daemon.service import Daemon
from app.settings import SettingsChange
from proxy.errors import HostnetError
from proxy.states import VmState
from proxy.wire import ProtocolError, Request, Response
from vm.transport.wire_socket import connect_wire

MAX_BODY = 64 * 1024
DAEMON_KEY = web.AppKey("daemon", Daemon)


def _error(status: int, kind: str, problem: str, fix: str = "") -> web.Response:
    """The API's one error shape: {error, problem, fix}, plus both as one ``message``."""
    message = f"{problem}; {fix}" if fix and fix not in problem else problem
    body = {"error": kind, "problem": problem, "fix": fix, "message": message}
    return web.json_response(body, status=status)


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[DAEMON_KEY].status())


async def get_ports(request: web.Request) -> web.Response:
    return web.json_response(await request.app[DAEMON_KEY].fresh_ports())


async def get_settings(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    revision = daemon.settings_revision  # before the reading: the file is at least this new
    effective = await asyncio.get_running_loop().run_in_executor(None, daemon.store.load)
    return web.json_response({**effective.to_json(), "revision": revision})


async def put_settings(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    body = await _read_object(request, '{"HostNetworkingEnabled": true}', empty_ok=False)
    if isinstance(body, web.Response):
        return body
    change = await daemon.change_settings(body)
    return _settings_answer(daemon, change)


async def delete_setting(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    change = await daemon.reset_setting(request.match_info["key"])
    return _settings_answer(daemon, change)


def _settings_answer(daemon: Daemon, change: SettingsChange) -> web.Response:
    """What changed, and the settings in effect now: another change taken meanwhile is in
    them, so an answer that arrives late cannot bring back what that change replaced."""
    return web.json_response(
        {
            "changed": list(change.changed),
            "restart_required": change.restart_required,
            "settings": daemon.settings_json(),
        }
    )


async def post_session(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    body = await _read_object(request, '{"signed_out": true}')
    if isinstance(body, web.Response):
        return body
    note = await daemon.sign_in_changed(signed_out=body.get("signed_out") is True)
    return web.json_response({"signed_in": daemon.signed_in, "note": note})


async def post_restart(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    await daemon.restart_forwarding()
    return web.json_response(daemon.status())


async def post_shutdown(request: web.Request) -> web.Response:
    logging.getLogger(__name__).info("shutdown asked through the control API")
    request.app[DAEMON_KEY].stopping.set()
    return web.json_response({"stopping": True})


class AgentUnavailable(HostnetError, ConnectionError):
    """No agent to ask; the message says why."""

    kind = "agent-unavailable"
    http_status = 409


async def agent_request(daemon: Daemon, method: str, params: dict[str, Any]) -> Response:
    """Ask the VM's agent: on the daemon's control link when forwarding runs, else on a
    short-lived control connection of its own (the agent serves one control channel; none
    is in use then)."""
    forwarding = daemon.forwarding
    try:
        if forwarding is not None:
            if not forwarding.link.connected:
                raise AgentUnavailable(
                    f"the VM's agent is not connected ({forwarding.link.detail or 'connecting'})"
                )
            return await forwarding.link.request(method, params)
        if daemon.backend is None or daemon.vm_state != VmState.UP:
            raise AgentUnavailable(f"the VM is not up (state {daemon.vm_state}); start it first")
        address, secret = await daemon.backend.up()
        wire = await connect_wire(await address.connect(), "daemon", "control", secret)
        try:
            await wire.send(Request(1, method, params))
            async with asyncio.timeout(REQUEST_TIMEOUT):
                while True:
                    event = await wire.next_event()
                    if isinstance(event, Response) and event.id == 1:
                        return event
        finally:
            wire.close()
    except (ConnectionError, OSError, ProtocolError, TimeoutError) as exc:
        if isinstance(exc, AgentUnavailable):
            raise
        raise AgentUnavailable(f"the VM's agent did not answer: {exc}") from None


async def _read_object(
    request: web.Request, example: str = '{"argv": ["uname", "-a"]}', *, empty_ok: bool = True
) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the error response that says what is wrong."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, "too-large", f"the body is above {MAX_BODY} bytes")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: too deep
        return _error(
            400, "bad-json", f"the body is not JSON ({exc}); send an object like {example}"
        )
    if not isinstance(body, dict) or not (body or empty_ok):
        return _error(400, "bad-body", f"send a non-empty JSON object like {example}")
    return body


async def _agent_call(request: web.Request, method: str) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    body = await _read_object(request)
    if isinstance(body, web.Response):
        return body
    response = await agent_request(daemon, method, body)
    if not response.ok:
        return _error(400, "refused", str(response.result))
    return web.json_response(response.result)


async def post_vm_exec(request: web.Request) -> web.Response:
    return await _agent_call(request, "exec")


async def post_vm_kill(request: web.Request) -> web.Response:
    return await _agent_call(request, "kill")


async def get_events(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
        }
    )
    await response.prepare(request)
    queue = daemon.events.subscribe()
    try:
        first = [("status", daemon.status()), ("ports", await daemon.fresh_ports())]
        for kind, data in first:
            await response.write(_sse({"type": kind, "data": data}))
        while True:
            try:
                async with asyncio.timeout(15):
                    event = await queue.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(_sse(event))
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away (aiohttp says "Connection lost" or a reset)
    finally:
        daemon.events.unsubscribe(queue)
    return response


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event['data'])}\n\n".encode()


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except HostnetError as exc:
        return _error(exc.http_status, exc.kind, exc.problem, exc.fix)
    except ConnectionResetError:
        # The client went away in the middle of its request: nobody to answer, not an error.
        logging.getLogger(__name__).debug("client left during %s %s", request.method, request.path)
        return web.Response(status=400)
    except web.RequestPayloadError as exc:
        # aiohttp logs it as it drains the body; http_server_logger makes that one line.
        error = parse_error(exc)
        problem = one_line(error.message if error is not None else str(exc))
        return _error(
            400,
            "bad-body",
            f"the request body could not be read: {problem}",
            "send the JSON body as it is, with no Content-Encoding and well-formed chunks",
        )
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too-large", f"the body is above {MAX_BODY} bytes; send less")
    except web.HTTPNotFound:
        return _error(404, "not-found", f"no such endpoint {request.path}; see /v1/status")
    except web.HTTPMethodNotAllowed as exc:
        return _error(
            405,
            "method-not-allowed",
            f"{request.method} is not allowed on {request.path}; use {exc.allowed_methods}",
        )


def make_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY)
    app[DAEMON_KEY] = daemon
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/ports", get_ports)
    app.router.add_get("/v1/settings", get_settings)
    app.router.add_put("/v1/settings", put_settings)
    app.router.add_delete("/v1/settings/{key}", delete_setting)
    app.router.add_post("/v1/session", post_session)
    app.router.add_post("/v1/restart", post_restart)
    app.router.add_post("/v1/shutdown", post_shutdown)
    app.router.add_get("/v1/events", get_events)
    app.router.add_post("/v1/vm/exec", post_vm_exec)
    app.router.add_post("/v1/vm/kill", post_vm_kill)
    return app


async def serve(daemon: Daemon, socket_path: Path) -> web.AppRunner:
    runner = web.AppRunner(
        make_app(daemon), access_log=None, shutdown_timeout=1.0, logger=http_server_logger()
    )
    await runner.setup()
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()  # a stale socket from a daemon that died (the lock says so)
    old = os.umask(0o177)
    try:
        site = web.UnixSite(runner, str(socket_path))
        await site.start()
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o600)
    return runner
