"""Live state for control-API clients: every change is published to each subscriber's queue."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

QUEUE_BOUND = 1000


class EventBus:
    """Fan-out of events; a subscriber that falls behind gets a ``resync`` event instead."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_BOUND)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    @property
    def watched(self) -> bool:
        """Whether any client follows the events: work done only for them can wait."""
        return bool(self._subscribers)

    def publish(self, kind: str, data: Any) -> None:
        event = {"type": kind, "data": data}
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # Drop what it has not read and tell it to fetch the whole state again.
                while not queue.empty():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait({"type": "resync", "data": None})
