"""What every forwarder says about the socket it listens on."""

from __future__ import annotations

import os
import socket

from proxy.addresses import Endpoint


class ListeningSocket:
    """Mixin for forwarders that keep their listening socket in ``_sock``."""

    _sock: socket.socket | None

    @property
    def bound(self) -> Endpoint:
        """The address actually bound (the port is filled in when 0 was asked for)."""
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return Endpoint(host, port)

    @property
    def socket_inode(self) -> int:
        """The listening socket's inode, so listener discovery can leave it out."""
        assert self._sock is not None
        return os.fstat(self._sock.fileno()).st_ino
