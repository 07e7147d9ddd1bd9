"""One side's hold, as the daemon and the agent both use it.

The side holds first packets to its own ports that have no socket (``PortHold``); for each,
it checks its own namespace first (a program here that has just started listening wins),
then asks the other side (``ask``: a "probe" over the control connection) and, if that side
listens, makes the mirrors (``mirror``) before the packet goes on. It also answers the other
side's probes (``answer``), and says what it is doing (``status``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container
from typing import Any

from proxy.errors import HostnetError
from proxy.hold.hold_rules import HoldRulesError
from proxy.hold.hold_switch import hold_wanted
from proxy.hold.packet_head import Destination
from proxy.hold.port_check import PortCheck
from proxy.hold.port_hold import PortHold
from proxy.hold.probe import answer_probe
from proxy.listeners import Listener, Proto

log = logging.getLogger(__name__)

Ask = Callable[[Proto, int], Awaitable[list[str] | None]]
"""Probe the other side for ``proto`` ``port``: the addresses listening there, or None when
the other side is not connected."""
Mirror = Callable[[Proto, int, list[str]], Awaitable[None]]
"""Make this side's mirrors of the other side's listeners on ``proto`` ``port``."""
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
    ) -> None:
        self.other = other
        self.own_inodes = own_inodes
        self.adopt = adopt
        self.ask = ask
        self.mirror = mirror
        self.nobody_there = nobody_there
        self.check: PortCheck | None = None
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

    async def _make_ready(self, target: Destination) -> None:
        check = self.check
        if check is None or check.listeners(target.proto, target.port, self.own_inodes()):
            return  # a program on this side listens by now: the packet is for it
        if self.nobody_there(target.proto, target.port):
            return
        if self.ask is None:
            return
        try:
            hosts = await self.ask(target.proto, target.port)
        except (OSError, HostnetError) as exc:
            log.info("held %s port %d: the %s did not answer: %s", *target.key, self.other, exc)
            return
        if hosts:
            await self.mirror(target.proto, target.port, hosts)
