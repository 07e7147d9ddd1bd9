"""The VM backends' error: the VM cannot be made, started, reached or controlled."""

from __future__ import annotations

from proxy.errors import HostnetError


class VMError(HostnetError):
    """The VM cannot be made or reached; the problem says why and the fix what to do."""
