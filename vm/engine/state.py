"""The engine's state as the daemon shows it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class EngineState(StrEnum):
    OFF = "off"  # the setting is off
    UNAVAILABLE = "unavailable"  # this VM or host cannot run it; detail says why and the fix
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # it stopped unasked; detail says how, it is being started again
    STOPPING = "stopping"
    NONE = "none"  # the attached VM runs no engine of its own; detail says where it was sought


class EngineOwner(StrEnum):
    HOSTNET = "hostnet"  # hostnet starts, supervises and stops it
    VM = "vm"  # the attached VM's own: hostnet only relays to it, never starts or stops it


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    detail: str = ""
    docker_host: str = ""
    storage_driver: str = ""
    restarts: int = 0
    pid: int = 0
    owner: EngineOwner = EngineOwner.HOSTNET

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        data["owner"] = str(self.owner)
        return data
