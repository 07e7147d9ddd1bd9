"""One side's hold, as the daemon and the agent both use it.

The side holds first packets to its own ports that have no socket (``PortHold``); for each,
it checks its own namespace first (a program here that has just started listening wins),
then asks the other side (``ask``: a "probe" over the control connection) and, if that side
listens, makes the mirrors (``mirror``) before the packet goes on. It also answers the other
side's probes (``answer``), and says what it is doing (``status``).

A UDP port the kernel path (proxy/nat) will carry goes the other way round: its rules go in
first (this side's, ``kernel_first``, or the other side's, which its answer says), the held
packets are sent again through them (``PortHold``), and only then is the mirror made. A UDP
flow's first packet fixes its conntrack entry: a flow begun on the mirror would stay on the
user-space relay for its whole life, and packets let through to a mirror made too early
would reach the server by another path, from another address, ahead of the held ones.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Container, Coroutine
from typing import Any

from proxy.errors import HostnetError
from proxy.hold.hold_rules import HoldRulesError
from proxy.hold.hold_switch import hold_wanted
from proxy.hold.packet_head import Destination
from proxy.hold.port_check import PortCheck
from proxy.hold.port_hold import Finish, PortHold
from proxy.hold.probe import ProbeAnswer, answer_probe
from proxy.listeners import Listener, Proto

log = logging.getLogger(__name__)

Ask = Callable[[Proto, int], Awaitable[ProbeAnswer | None]]
"""Probe the other side for ``proto`` ``port``: the addresses listening there (and whether
its kernel rules carry the port), or None when the other side is not connected."""
Mirror = Callable[[Proto, int, list[str]], Coroutine[Any, Any, None]]
"""Make this side's mirrors of the other side's listeners on ``proto`` ``port``."""
HoldBack = Callable[[Proto, int, float], None]
"""Keep this side's mirrors of ``proto`` ``port`` from starting for so many seconds, or until
``mirror`` is called for it (or ``let_start``)."""
LetStart = Callable[[Proto, int], None]
"""End a ``HoldBack`` early: the held port gets no mirror from the hold after all."""
KernelFirst = Callable[[Proto, int, list[str]], Awaitable[bool]]
"""Put ``proto`` ``port``, listening on the other side's ``hosts``, in the kernel path's
rules if its IPv4 mirror will qualify; True if the rules carry it now."""


async def no_kernel_path(proto: Proto, port: int, hosts: list[str]) -> bool:
    return False


NobodyThere = Callable[[Proto, int], bool]
"""True when a direct look at the other side finds no socket at all on ``proto`` ``port``
(its own mirrors included): then there is nothing to ask, and a refusal is not delayed by
a round trip. False when it finds one or cannot look: then the other side is asked."""


def cannot_look(proto: Proto, port: int) -> bool:
    return False


class HoldSide:
    """The hold of one side; ``other`` names the other side in messages ("VM", "host")."""

    def __init__(
        self,
        *,
        other: str,
        own_inodes: Callable[[], Container[int]],
        adopt: Callable[[frozenset[Listener]], None],
        ask: Ask | None,
        mirror: Mirror,
        nobody_there: NobodyThere = cannot_look,
        hold_back: HoldBack = lambda proto, port, seconds: None,
        let_start: LetStart = lambda proto, port: None,
    ) -> None:
        self.other = other
        self.own_inodes = own_inodes
        self.adopt = adopt
        self.ask = ask
        self.mirror = mirror
        self.nobody_there = nobody_there
        self.hold_back = hold_back
        self.let_start = let_start
        self.check: PortCheck | None = None
        self.kernel_first: KernelFirst = no_kernel_path
        self.hold = PortHold(self._make_ready)
        self.problem = ""

    def start(self) -> None:
        """Start holding; where that cannot be, say why in ``status`` and go on without."""
        self.check = PortCheck()
        if self.ask is None:
            self.problem = "off: this side has nobody to ask"
            return
        if not hold_wanted():
            self.problem = (
                f"turned off (HOSTNET_HOLD=off): new {self.other} ports wait for discovery"
            )
            return
        try:
            self.hold.start()
        except HoldRulesError as exc:
            self.problem = f"{exc}; until then new {self.other} ports wait for discovery"
            log.warning("first packets are not held: %s", exc)

    async def stop(self) -> None:
        await self.hold.stop()
        if self.check is not None:
            self.check.close()
            self.check = None

    def status(self) -> dict[str, Any]:
        state = "on" if self.hold.running else "off"
        return {"state": state, "detail": self.problem, **self.hold.counters.as_dict()}

    def answer(self, params: dict[str, Any]) -> list[str]:
        """The other side's probe: who listens on that port here (HostnetError if malformed)."""
        if self.check is None:
            return []
        return answer_probe(self.check, params, self.own_inodes(), self.adopt)

    async def _make_ready(self, target: Destination) -> Finish | None:
        """Ready the port for a held packet. For a UDP port the kernel path carries now,
        the mirror is made by the returned ``Finish``, after the packets are resent.

        A UDP port's mirror is held back from the first held packet on, before the other
        side is asked: discovery may see the new listener during that round trip, and a
        mirror it made then would take the flow's later packets by the relay (the flow's
        conntrack entry is not NATed until the hold resends it)."""
        check = self.check
        if check is None or check.listeners(target.proto, target.port, self.own_inodes()):
            return None  # a program on this side listens by now: the packet is for it
        if self.nobody_there(target.proto, target.port) or self.ask is None:
            return None
        proto, port = target.proto, target.port
        if proto == "udp":
            self.hold_back(proto, port, self.hold.decide_timeout)
        finish: Finish | None = None
        try:
            finish = await self._mirror_or_finish(self.ask, proto, port)
        finally:
            if proto == "udp" and finish is None:
                self.let_start(proto, port)  # mirrored by now, or nothing to mirror
        return finish

    async def _mirror_or_finish(self, ask: Ask, proto: Proto, port: int) -> Finish | None:
        try:
            answer = await ask(proto, port)
        except (OSError, HostnetError) as exc:
            log.info("held %s port %d: the %s did not answer: %s", proto, port, self.other, exc)
            return None
        if answer is None or not answer.hosts:
            return None
        hosts = answer.hosts
        if proto == "udp" and (answer.kernel or await self.kernel_first(proto, port, hosts)):
            return functools.partial(self.mirror, proto, port, hosts)
        await self.mirror(proto, port, hosts)  # lets discovery's mirror start too
        return None
