"""The states hostnet reports, as enums: one spelling each, everywhere.

They are ``StrEnum``s, so they serialise to the same words the control API has always sent
("active", "up", "connected"...) and compare equal to them.
"""

from __future__ import annotations

from enum import StrEnum


class MirrorPhase(StrEnum):
    """What one mirror is doing; every state but ACTIVE comes with a reason."""

    PENDING = "pending"  # wanted, not started yet
    ACTIVE = "active"  # listening and forwarding
    CONFLICT = "conflict"  # another program holds the port on this side
    PRIVILEGED = "privileged"  # the port is below 1024 and we may not bind it
    EXCLUDED = "excluded"  # the excluded-ports setting names it
    SHADOWED = "shadowed"  # a program on this side listens on it: the local listener wins
    ERROR = "error"  # any other failure to listen
    REMOVED = "removed"  # the other side stopped listening; the mirror is gone


class VmState(StrEnum):
    DOWN = "down"
    STARTING = "starting"
    UP = "up"
    RESTARTING = "restarting"  # the agent (or the VM) stopped and is being brought back
    ERROR = "error"


class LinkState(StrEnum):
    """The daemon's control connection to the agent."""

    DOWN = "down"  # not wanted: forwarding is off
    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"  # the agent refused us (wrong secret or version): retried slowly


class ForwardingState(StrEnum):
    """What ``hostnet status`` says in one word."""

    ON = "on"
    OFF = "off"
    REFUSED = "refused"  # the policy gate refuses (ECI, Windows containers)
    ERROR = "error"  # allowed, but the VM or the agent link is broken
