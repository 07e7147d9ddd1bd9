"""Transport addresses: ``unix:PATH``, ``tcp:HOST:PORT``, ``vsock:CID:PORT`` and ``virtio:...``.

``virtio:`` is the virtio-serial multiplexer: on the host ``virtio:/path/agent.sock`` (QEMU's
chardev socket; ``connect()`` opens a multiplexed stream), in the guest ``virtio:PORT-NAME``
or ``virtio:/dev/vportNpM`` (the agent serves it with :class:`vm.transport.mux_link.GuestMuxLink`
instead of ``listen()``). A stream there is the local end of a socketpair, so the code above
works on sockets as with the other kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from dataclasses import dataclass
from typing import Literal

from proxy.addresses import AddressError, parse_endpoint

Kind = Literal["unix", "tcp", "vsock", "virtio"]
_FORMS = (
    "use unix:/path/agent.sock, tcp:HOST:PORT, vsock:CID:PORT (CID may be ANY), or "
    "virtio:/path/chardev.sock (host) and virtio:PORT-NAME (guest)"
)


@dataclass(frozen=True)
class TransportAddress:
    kind: Kind
    path: str = ""
    host: str = ""
    port: int = 0
    cid: int = 0

    @property
    def passes_fds(self) -> bool:
        """Both ends share a kernel, so connected sockets can be handed over."""
        return self.kind == "unix"

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "vsock":
            return f"vsock:{self.cid}:{self.port}"
        if self.kind == "virtio":
            return f"virtio:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    def _socket(self) -> socket.socket:
        if self.kind == "unix":
            return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.kind == "vsock":
            return socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        return socket.socket(family, socket.SOCK_STREAM)

    def _sockaddr(self) -> str | tuple[str, int] | tuple[int, int]:
        if self.kind == "unix":
            return self.path
        if self.kind == "vsock":
            return (self.cid, self.port)
        return (self.host, self.port)

    @property
    def multiplexed(self) -> bool:
        """Streams share one byte stream (virtio-serial): accept them with a GuestMuxLink."""
        return self.kind == "virtio"

    def listen(self, backlog: int = 4096) -> socket.socket:
        if self.kind == "virtio":
            raise OSError(errno.EINVAL, f"{self} is a multiplexed port: serve it with GuestMuxLink")
        sock = self._socket()
        try:
            if self.kind == "unix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                old = os.umask(0o177)  # the socket file is 0600 from the start
                try:
                    sock.bind(self.path)
                finally:
                    os.umask(old)
            else:
                if self.kind == "tcp":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(self._sockaddr())
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {self}: {exc.strerror}") from None
        return sock

    async def connect(self, timeout: float = 5.0) -> socket.socket:
        if self.kind == "virtio":
            from vm.transport.mux_link import host_link

            return await host_link(self.path).open_socket(timeout=timeout)
        loop = asyncio.get_running_loop()
        sock = self._socket()
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, self._sockaddr())
        except BaseException:
            sock.close()
            raise
        if self.kind == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def parse_transport(text: str) -> TransportAddress:
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        raise AddressError(f"bad transport address {text!r}: {_FORMS}")
    if kind == "unix":
        return TransportAddress("unix", path=rest)
    if kind == "tcp":
        try:
            endpoint = parse_endpoint(rest)
        except AddressError as exc:
            raise AddressError(f"bad transport address {text!r}: {exc}; {_FORMS}") from None
        return TransportAddress("tcp", host=endpoint.host, port=endpoint.port)
    if kind == "vsock":
        cid_text, sep, port_text = rest.partition(":")
        if cid_text.upper() == "ANY":  # listen on every CID (the agent in a VM)
            cid_text = str(socket.VMADDR_CID_ANY)
        if not (sep and cid_text.isdigit() and port_text.isdigit()):
            raise AddressError(f"bad vsock address {text!r}: {_FORMS}")
        return TransportAddress("vsock", cid=int(cid_text), port=int(port_text))
    if kind == "virtio":
        return TransportAddress("virtio", path=rest)
    raise AddressError(f"bad transport address {text!r}: unknown kind {kind!r}; {_FORMS}")
