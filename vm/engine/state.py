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


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    detail: str = ""
    docker_host: str = ""
    storage_driver: str = ""
    restarts: int = 0
    pid: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data
