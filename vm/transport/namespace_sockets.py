"""Sockets made inside the namespace VM by a thread of the daemon that entered it.

A socket keeps the network namespace it was made in, whichever thread uses it later. So a
daemon thread that called setns(2) into the VM's namespace can make sockets the daemon's
event loop then connects to VM listeners itself: a forwarded connection is one splice
between two kernel sockets with no round trip to the agent at all. The thread keeps a
small pool ready so taking a socket costs no thread hand-off.

Only for the named namespace a root daemon made (entering another user namespace's network
needs more than the daemon has); the agent's hand-over serves everywhere else.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections import deque

from proxy.errors import HostnetOSError
from proxy.netns_entry import enter_netns

POOL_TARGET = 64
"""Sockets kept ready per kind; the thread refills when half are taken."""

EMPTY_WAIT = 1.0

Kind = tuple[int, int]  # (family, type)


class NamespaceSocketsError(HostnetOSError):
    """The namespace cannot be entered; the caller keeps using the agent."""


class NamespaceSockets:
    """Unconnected sockets of the network namespace at ``netns_path``, from a pool."""

    def __init__(self, netns_path: str, pool_target: int = POOL_TARGET) -> None:
        self.netns_path = netns_path
        self.pool_target = pool_target
        self._pools: dict[Kind, deque[socket.socket]] = {}
        self._wanted: deque[Kind] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, kinds: tuple[Kind, ...] = ()) -> None:
        """Enter the namespace in a new thread and fill the pools of ``kinds``.

        Raises NamespaceSocketsError if the namespace cannot be entered.
        """
        for kind in kinds:
            self._pools[kind] = deque()
            self._wanted.append(kind)
        self._thread = threading.Thread(target=self._run, name="netns-sockets", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self._error is not None:
            raise NamespaceSocketsError(None, f"cannot enter {self.netns_path}: {self._error}")

    def _run(self) -> None:
        try:
            enter_netns(self.netns_path)
        except BaseException as exc:  # reported to start(), which raises it
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            with self._wake:
                while not self._wanted and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                kind = self._wanted.popleft()
            pool = self._pools[kind]
            try:
                while len(pool) < self.pool_target:
                    pool.append(socket.socket(*kind))
            except OSError:
                pass  # out of descriptors: take() falls back to the caller's other path

    def take(self, family: int, type_: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket of the namespace, from the pool.

        When a burst emptied the pool this waits for the thread (a refill takes well under
        a millisecond) rather than fail; OSError if none comes within EMPTY_WAIT.
        """
        kind = (family, type_)
        pool = self._pools.get(kind)
        if pool is None:
            pool = self._pools[kind] = deque()
        if len(pool) <= self.pool_target // 2:
            self._refill(kind)
        deadline = time.monotonic() + EMPTY_WAIT
        while True:
            try:
                return pool.popleft()
            except IndexError:
                if time.monotonic() > deadline or self._stopping:
                    raise OSError(errno.EAGAIN, "no socket of the VM namespace ready") from None
                time.sleep(0.0001)

    def _refill(self, kind: Kind) -> None:
        with self._wake:
            if kind not in self._wanted:
                self._wanted.append(kind)
                self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(5)
        for pool in self._pools.values():
            while pool:
                pool.popleft().close()
