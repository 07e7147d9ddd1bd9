"""Hold, then decide, on asyncio: the queue reader and its small interface to the daemon and agent.

``PortHold(make_ready)`` installs the hold table in the current network namespace, binds
its queue and, for each held first packet, awaits ``make_ready(destination)``: the caller
checks its own side first, then asks the other side and makes the mirror if that side
listens. Then the packet is let go unchanged: if a mirror now listens it takes the packet,
otherwise the kernel refuses it as it would have (RST or ICMP port-unreachable). Packets to
the same port wait for one decision. A decision that takes longer than ``decide_timeout``
lets the packet go anyway, so nothing waits for long.

``make_ready`` may answer a ``Finish`` instead: the kernel path's NAT rules carry the port
from now on. Then the held IPv4 packets are dropped from the queue and sent again through the
rules (proxy/hold/flow_resend.py), so their flows are the kernel's, not the mirror's; then
``Finish`` makes the mirror, and the other packets (``::1``) are let go to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from proxy.hold.flow_resend import FlowResender, can_resend
from proxy.hold.hold_rules import HoldRulesError, install
from proxy.hold.netlink_attrs import NLMSG_ERROR, walk_messages
from proxy.hold.nfqueue_codec import (
    NETLINK_NETFILTER,
    NF_DROP,
    bind_messages,
    is_packet,
    parse_packet,
    verdict_message,
)
from proxy.hold.packet_head import Destination, destination

log = logging.getLogger(__name__)

Finish = Callable[[], Awaitable[None]]
"""What is left to do once the held packets were sent through the kernel path's rules."""
MakeReady = Callable[[Destination], Awaitable[Finish | None]]
"""Ready the port for a held packet: None to let the packets go now, or a ``Finish``."""

DECIDE_TIMEOUT: Final = 3.0
FIRST_QUEUE: Final = 0x4800
QUEUE_TRIES: Final = 256
SOL_NETLINK: Final = 270
NETLINK_NO_ENOBUFS: Final = 5
RECV_BUFFER: Final = 1 << 20
READ_BATCHES: Final = 64
"""Reads of the queue per wake-up of the event loop, so a flood cannot starve the loop."""
READ_TO_END_BATCHES: Final = 4096
"""Reads before a resend: the whole queue, short of a flood that never lets it empty."""
_INT: Final = struct.Struct("=i")

DecisionKey = tuple[str, int]


@dataclass
class HoldCounters:
    """What the hold did: packets held, decisions made and how long they took (seconds)."""

    held: int = 0
    decisions: int = 0
    timeouts: int = 0
    failures: int = 0
    resent: int = 0
    decide_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, float]:
        recent = sorted(self.decide_seconds)
        return {
            "held": self.held,
            "decisions": self.decisions,
            "timeouts": self.timeouts,
            "failures": self.failures,
            "resent": self.resent,
            "decide_ms_p50": round(recent[len(recent) // 2] * 1e3, 3) if recent else 0.0,
            "decide_ms_max": round(recent[-1] * 1e3, 3) if recent else 0.0,
        }


class PortHold:
    """The hold for one side, in the network namespace it is started in (needs CAP_NET_ADMIN)."""

    def __init__(self, make_ready: MakeReady, *, decide_timeout: float = DECIDE_TIMEOUT) -> None:
        self.make_ready = make_ready
        self.decide_timeout = decide_timeout
        self.counters = HoldCounters()
        self.queue = -1
        self._queue_sock: socket.socket | None = None
        self._rules_sock: socket.socket | None = None
        self._waiting: dict[DecisionKey, list[tuple[int, bytes]]] = {}
        self.resender = FlowResender()
        self._tasks: set[asyncio.Task[None]] = set()
        self._buffer = bytearray(256 * 1024)

    @property
    def running(self) -> bool:
        return self._queue_sock is not None

    def start(self) -> None:
        """Bind a free queue, install the table, start reading. HoldRulesError if the kernel
        refuses (the caller then goes on with discovery alone and says so)."""
        queue_sock, queue = _bind_free_queue()
        try:
            self._rules_sock = install(queue)
        except BaseException:
            queue_sock.close()
            raise
        self._queue_sock, self.queue = queue_sock, queue
        if not self.resender.open():
            log.info("%s", self.resender.problem)
        queue_sock.setblocking(False)
        asyncio.get_running_loop().add_reader(queue_sock.fileno(), self._on_readable)

    async def stop(self) -> None:
        """Remove the table first (nothing more is held), then let go of what still waits."""
        if self._rules_sock is not None:
            self._rules_sock.close()
            self._rules_sock = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        sock, self._queue_sock = self._queue_sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            for key in list(self._waiting):
                self._release(key, sock)
            sock.close()
        self.resender.close()

    def _on_readable(self) -> None:
        self._read_queue(READ_BATCHES)

    def _read_queue(self, batches: int) -> None:
        """Take up to ``batches`` reads of queued packets; fewer once the queue is empty."""
        sock = self._queue_sock
        if sock is None:
            return
        for _ in range(batches):
            try:
                size = sock.recv_into(self._buffer)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue  # the queue fails open when full: nothing is stuck
                log.warning("reading the hold queue failed: %s", exc)
                return
            view = memoryview(self._buffer)[:size]
            for kind, _seq, offset, length in walk_messages(view):
                if is_packet(kind):
                    packet = parse_packet(view, offset, length)
                    if packet is not None:
                        self._on_packet(sock, packet.packet_id, packet.payload)

    def _on_packet(self, sock: socket.socket, packet_id: int, payload: bytes) -> None:
        self.counters.held += 1
        target = destination(payload)
        if target is None:
            _send(sock, verdict_message(self.queue, packet_id))
            return
        key = target.key
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append((packet_id, payload))
            return
        self._waiting[key] = [(packet_id, payload)]
        task = asyncio.get_running_loop().create_task(self._decide(key, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, key: DecisionKey, target: Destination) -> None:
        started = time.perf_counter()
        finish: Finish | None = None
        try:
            async with asyncio.timeout(self.decide_timeout):
                finish = await self.make_ready(target)
                if finish is not None:
                    await self._resend_then(key, finish)
        except TimeoutError:
            self.counters.timeouts += 1
            log.warning("no decision for %s port %d in %.1f s", *key, self.decide_timeout)
        except Exception:
            self.counters.failures += 1
            log.exception("deciding a held %s port %d failed", *key)
        self.counters.decisions += 1
        self.counters.decide_seconds.append(time.perf_counter() - started)
        del self.counters.decide_seconds[:-1000]
        if self._queue_sock is not None:
            self._release(key, self._queue_sock)

    def _release(self, key: DecisionKey, sock: socket.socket) -> None:
        for packet_id, _payload in self._waiting.pop(key, []):
            _send(sock, verdict_message(self.queue, packet_id))

    async def _resend_then(self, key: DecisionKey, finish: Finish) -> None:
        """Drop the held IPv4 packets from the queue and send them again through the NAT
        rules, then ``finish``; the other packets (``::1``, which the rules do not carry)
        stay held until then. Without a raw socket, ``finish`` first and all are let go.

        The client may still be sending when the rules go in (they take a millisecond): its
        packets match the flow's old entry and are queued until that entry is deleted, and
        after that they take the rules. So the queue is read to its end before the entries
        go and again right after, and everything held is sent in the order it came; what
        the kernel queued while ``finish`` ran is sent again too, not let go to the mirror.
        A flow's entry is deleted once only: later, its entry is the NATed one the resend
        made, which the replies on their way need."""
        sock = self._queue_sock
        if sock is None or not self.resender.available:
            await finish()
            return
        held = self._take_resendable(key)
        forgotten = self.resender.forget(held)
        late = self._take_resendable(key)
        forgotten = self.resender.forget(late, forgotten)  # only a flow that began meanwhile
        self.counters.resent += self.resender.send(held + late)
        await finish()
        straggling = self._take_resendable(key)
        self.resender.forget(straggling, forgotten)
        self.counters.resent += self.resender.send(straggling)

    def _take_resendable(self, key: DecisionKey) -> list[bytes]:
        """Read the queue to its end, then drop from it this port's held packets that can be
        sent again and return them, oldest first; the others stay held."""
        self._read_queue(READ_TO_END_BATCHES)
        sock = self._queue_sock
        again: list[bytes] = []
        kept: list[tuple[int, bytes]] = []
        for packet_id, payload in self._waiting.get(key, []):
            if sock is not None and can_resend(payload):
                _send(sock, verdict_message(self.queue, packet_id, NF_DROP))
                again.append(payload)
            else:
                kept.append((packet_id, payload))
        self._waiting[key] = kept
        return again


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # gone: with ``bypass`` and no reader, packets pass
        sock.send(data)


def _bind_free_queue() -> tuple[socket.socket, int]:
    """A netfilter queue socket bound to the first free queue number from FIRST_QUEUE.

    The kernel refuses a number another socket holds with EPERM (its owner check comes
    before the bind's EBUSY), the same error as a missing CAP_NET_ADMIN: a number listed in
    this namespace's ``nfnetlink_queue`` file is taken, and the next one is tried.
    """
    first = FIRST_QUEUE + os.getpid() % QUEUE_TRIES
    for step in range(QUEUE_TRIES):
        queue = FIRST_QUEUE + (first - FIRST_QUEUE + step) % QUEUE_TRIES
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
        )
        try:
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            _configure(sock, queue)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EBUSY or queue in _queues_in_use():
                continue  # another instance's queue
            raise HoldRulesError(
                exc.errno or errno.EPERM,
                f"cannot bind a netfilter queue ({exc})",
                "run as root (CAP_NET_ADMIN) on a kernel with nfnetlink_queue",
            ) from None
        return sock, queue
    raise HoldRulesError(
        errno.EBUSY,
        f"every hold queue number ({FIRST_QUEUE}..{FIRST_QUEUE + QUEUE_TRIES - 1}) is taken",
        "stop other hostnet instances in this network namespace",
    )


def _queues_in_use() -> frozenset[int]:
    """The queue numbers bound in the calling thread's network namespace (a thread of ours
    may have entered the VM's)."""
    try:
        with open("/proc/thread-self/net/netfilter/nfnetlink_queue") as table:
            return frozenset(int(line.split()[0]) for line in table if line.strip())
    except (OSError, ValueError):
        return frozenset()


def _configure(sock: socket.socket, queue: int) -> None:
    sock.settimeout(5)
    for request in bind_messages(queue):
        sock.send(request)
        while True:
            data = sock.recv(4096)
            codes = [
                _INT.unpack_from(data, offset + 16)[0]
                for kind, _seq, offset, _length in walk_messages(data)
                if kind == NLMSG_ERROR
            ]
            if codes:
                if codes[0]:
                    raise OSError(-codes[0], os.strerror(-codes[0]))
                break
