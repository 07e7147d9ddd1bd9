"""Small real servers and clients for the relay tests, on the test's own event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from proxy.addresses import Endpoint

Handler = Callable[[socket.socket], Awaitable[None]]


async def recv_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    while True:
        data = await loop.sock_recv(sock, 1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@asynccontextmanager
async def tcp_server(host: str, handler: Handler) -> AsyncIterator[Endpoint]:
    """A TCP server on ``host`` (port chosen by the kernel) running ``handler`` per connection."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(1024)
    listener.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()

    async def serve_one(conn: socket.socket) -> None:
        try:
            await handler(conn)
        finally:
            conn.close()

    async def accept_loop() -> None:
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            task = loop.create_task(serve_one(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    acceptor = loop.create_task(accept_loop())
    try:
        yield Endpoint(host, listener.getsockname()[1])
    finally:
        acceptor.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(acceptor, *tasks, return_exceptions=True)
        listener.close()


async def connect(endpoint: Endpoint) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, endpoint.sockaddr)
    return sock


async def echo_handler(conn: socket.socket) -> None:
    """Echo everything back, then pass the client's FIN on."""
    loop = asyncio.get_running_loop()
    while True:
        data = await loop.sock_recv(conn, 1 << 20)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return
        await loop.sock_sendall(conn, data)
