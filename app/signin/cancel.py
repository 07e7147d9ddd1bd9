"""A cancel path for sign-in flows run from another thread (the GUI calls them off the UI thread).

Async callers cancel the task as usual. Sync callers pass a ``threading.Event`` to
``run_blocking``; setting it cancels the running flow, which raises ``SignInCancelled``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.signin.errors import SignInCancelled

T = TypeVar("T")


async def _watch(event: threading.Event, task: asyncio.Task[T]) -> None:
    while not event.is_set():  # a threading.Event cannot be awaited
        await asyncio.sleep(0.05)
    task.cancel()


def run_blocking(flow: Callable[[], Awaitable[T]], cancel: threading.Event | None = None) -> T:
    """Run an async flow to completion in a fresh event loop, cancellable from any thread."""

    async def main() -> T:
        task: asyncio.Task[T] = asyncio.ensure_future(flow())
        watcher = asyncio.create_task(_watch(cancel, task)) if cancel is not None else None
        try:
            return await task
        except asyncio.CancelledError:
            if cancel is not None and cancel.is_set():
                raise SignInCancelled("Sign-in was cancelled.") from None
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    return asyncio.run(main())
