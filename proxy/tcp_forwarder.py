"""Accept TCP connections on a listen address and relay each one to an upstream.

The upstream is any coroutine that returns a connected socket: a plain TCP connect to a
target for ``hostnet forward``, or a stream through the transport to the other side of the
VM boundary for the daemon and the agent.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.accept_loop import AcceptLoop
from proxy.addresses import Endpoint
from proxy.counters import ForwardCounters
from proxy.errors import HostnetOSError
from proxy.listening_socket import ListeningSocket
from proxy.pipe_pool import PIPES
from proxy.tcp_relay import SPLICE_AVAILABLE, RelayPair, abort, counted_relay, relay_until_done

Connector = Callable[[tuple[str, int]], Awaitable[socket.socket]]
"""Given the client's address, returns a connected, non-blocking upstream socket."""

CONNECT_TIMEOUT = 10.0
KEEPALIVE_IDLE = 60


class ListenError(HostnetOSError):
    """The listen address cannot be used; the message names the cause and the fix."""


def tune(sock: socket.socket) -> None:
    """No Nagle delay and TCP keepalive on a relayed connection's socket."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)


def listen_error(endpoint: Endpoint, exc: OSError, proto: str = "TCP") -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        why = (
            f"{proto} port {endpoint.port} on {endpoint.host} is already in use by another program"
        )
        fix = "stop that program or choose another port"
    elif exc.errno == errno.EACCES:
        why = f"{proto} port {endpoint.port} is privileged (below 1024) and needs root"
        fix = "run as root, lower net.ipv4.ip_unprivileged_port_start, or choose a port >= 1024"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"{endpoint.host} is not an address of this machine"
        fix = "listen on 127.0.0.1, ::1 or an address this machine has"
    else:
        why = f"cannot listen on {endpoint} ({proto}): {exc.strerror}"
        fix = "check the address and port"
    return ListenError(exc.errno, f"{why}; {fix}")


def open_listener(endpoint: Endpoint, backlog: int = 1024) -> socket.socket:
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if endpoint.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(endpoint.sockaddr)
        tune(sock)  # accepted sockets inherit TCP_NODELAY and keepalive from the listener
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise listen_error(endpoint, exc) from None
    return sock


async def connect_socket(
    sock: socket.socket, sockaddr: tuple[Any, ...], timeout: float = CONNECT_TIMEOUT
) -> None:
    """Connect the non-blocking ``sock`` to the numeric ``sockaddr`` within ``timeout``.

    Not ``loop.sock_connect``: uvloop's resolves even a numeric address with getaddrinfo
    on its thread pool, and with ``asyncio.wait_for`` around it that cost ~60-90 us of CPU
    per connection, a third of the relay's whole cost of a short connection
    (tests/bench/bench_relay.py). Raises TimeoutError, or the OSError connect gave.
    """
    try:
        sock.connect(sockaddr)
        return
    except BlockingIOError:  # EINPROGRESS: wait until the socket is writable
        pass
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    ready: asyncio.Future[None] = loop.create_future()

    def on_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    def on_timeout() -> None:
        if not ready.done():
            ready.set_exception(TimeoutError(f"connect timed out after {timeout:g} s"))

    loop.add_writer(fd, on_writable)
    timer = loop.call_later(timeout, on_timeout)
    try:
        await ready
    finally:
        timer.cancel()
        loop.remove_writer(fd)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error))


def _plain_tcp_socket(family: socket.AddressFamily) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM)


class TcpTarget:
    """A connector to one fixed TCP ``target``.

    The forwarder recognises it and connects with callbacks instead of a task per
    connection, which is most of what a short relayed connection costs in Python.
    """

    def __init__(
        self,
        target: Endpoint,
        timeout: float = CONNECT_TIMEOUT,
        make_socket: Callable[[socket.AddressFamily], socket.socket] | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.make_socket = make_socket or _plain_tcp_socket
        """Makes the unconnected socket: another network namespace's, for instance."""

    def new_socket(self) -> socket.socket:
        sock = self.make_socket(self.target.family)
        sock.setblocking(False)
        return sock

    async def __call__(self, _client: tuple[str, int]) -> socket.socket:
        sock = self.new_socket()
        try:
            await connect_socket(sock, self.target.sockaddr, self.timeout)
        except BaseException:
            sock.close()
            raise
        return sock


def tcp_connector(target: Endpoint, timeout: float = CONNECT_TIMEOUT) -> Connector:
    """A connector that opens a plain TCP connection to ``target``."""
    return TcpTarget(target, timeout)


class TcpForwarder(ListeningSocket):
    """Relays every connection accepted on ``listen`` to what ``connector`` returns."""

    def __init__(
        self,
        listen: Endpoint,
        connector: Connector,
        *,
        use_splice: bool = SPLICE_AVAILABLE,
        backlog: int = 1024,
        sock: socket.socket | None = None,
    ) -> None:
        self.listen = listen
        self.connector = connector
        self.use_splice = use_splice
        self.backlog = backlog
        self.counters = ForwardCounters()
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting: AcceptLoop | None = None
        self._pairs: set[RelayPair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connecting: dict[int, tuple[socket.socket, socket.socket, asyncio.TimerHandle]] = {}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._sock is None:
            self._sock = open_listener(self.listen, self.backlog)
        self._accepting = AcceptLoop(self._sock, self._on_connection, self._on_accept_error)
        self._accepting.start()

    async def stop(self) -> None:
        """Stop listening and reset every connection still open."""
        if self._accepting is not None:
            self._accepting.stop()
        if self._sock is not None:
            self._sock.close()
        for fd, (client, upstream, timer) in list(self._connecting.items()):
            if self._loop is not None:
                self._loop.remove_writer(fd)
            timer.cancel()
            upstream.close()
            abort(client)
            self.counters.connections_open -= 1
        self._connecting.clear()
        for task in list(self._tasks):
            task.cancel()
        for pair in list(self._pairs):
            pair.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        PIPES.release_idle()

    def _on_accept_error(self, exc: OSError) -> None:
        # EMFILE and friends: the accept loop pauses a moment; the backlog holds the rest.
        self.counters.note_error(f"accept failed: {exc.strerror}")

    def _on_connection(self, conn: socket.socket, address: Any) -> None:
        assert self._loop is not None
        if isinstance(self.connector, TcpTarget):
            self._connect_direct(conn, self.connector)
            return
        task = self._loop.create_task(self._serve(conn, address))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _connect_direct(self, client: socket.socket, target: TcpTarget) -> None:
        """Connect ``target`` for ``client`` with callbacks only (no task, no coroutine)."""
        assert self._loop is not None
        loop = self._loop
        counters = self.counters
        counters.connections_total += 1
        try:
            upstream = target.new_socket()
        except OSError as exc:  # out of descriptors: refuse this one, keep the relay alive
            counters.note_error(f"connect upstream failed: {exc.strerror or exc}")
            abort(client)
            return
        counters.connections_open += 1
        fd = upstream.fileno()

        def fail(message: str) -> None:
            counters.note_error(f"connect upstream failed: {message}")
            counters.connections_open -= 1
            self._connecting.pop(fd, None)
            upstream.close()
            abort(client)

        def connected() -> None:
            entry = self._connecting.pop(fd, None)
            if entry is None:
                return
            loop.remove_writer(fd)
            entry[2].cancel()
            error = upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                fail(os.strerror(error))
                return
            self._start_pair(client, upstream)

        def timed_out() -> None:
            if self._connecting.get(fd) is not None:
                loop.remove_writer(fd)
                fail(f"timed out after {target.timeout:g} s")

        try:
            upstream.connect(target.target.sockaddr)
        except BlockingIOError:
            timer = loop.call_later(target.timeout, timed_out)
            self._connecting[fd] = (client, upstream, timer)
            loop.add_writer(fd, connected)
            return
        except OSError as exc:
            fail(exc.strerror or str(exc))
            return
        self._start_pair(client, upstream)

    def _start_pair(self, client: socket.socket, upstream: socket.socket) -> None:
        """Relay an accepted client and its connected upstream until both are done."""
        tune(upstream)
        pair = counted_relay(client, upstream, self.counters, splice=self.use_splice)
        self._pairs.add(pair)

        def finished(_done: object) -> None:
            self._pairs.discard(pair)
            self.counters.connections_open -= 1

        pair.start()
        pair.on_done(finished)

    async def _serve(self, client: socket.socket, address: tuple[str, int]) -> None:
        counters = self.counters
        counters.connections_open += 1
        counters.connections_total += 1
        try:
            try:
                upstream = await self.connector(address)
            except asyncio.CancelledError:
                abort(client)
                raise
            except (TimeoutError, OSError, ConnectionError) as exc:
                counters.note_error(f"connect upstream failed: {exc}")
                abort(client)
                return
            tune(upstream)  # the client inherited the listener's options
            pair = counted_relay(client, upstream, self.counters, splice=self.use_splice)
            self._pairs.add(pair)
            try:
                await relay_until_done(pair)
            finally:
                self._pairs.discard(pair)
        finally:
            counters.connections_open -= 1
