"""Watch this network namespace's listeners and report additions and removals on asyncio.

There is no kernel event for listen(), so this polls, in two tiers:

- every ``probe_interval`` (20 ms) it reads the /proc/net/sockstat ``inuse`` counters (~3 us,
  see ``proxy.socket_counts``) and dumps the listeners only when they moved, or when poked;
- every ``refresh_interval`` it dumps anyway, as a safety net for changes the counters miss
  (a listen() and a connection close cancelling out, a bound UDP socket that connects). That
  period adapts to what a dump costs: ``cost / cpu_budget``, kept between 50 and 200 ms, so
  1,000 listeners cost ~0.25% of a core at idle and a handful cost next to nothing.

A listener missing from one dump is only reported removed when the next dump, ``confirm_delay``
later, still misses it: a dump spanning several netlink reads is not atomic, and a socket moving
in the hash between two reads can be skipped once. That keeps a mirror from flapping.

A dump of 1,000 listeners takes ~0.5 ms and runs on the event loop; when one takes longer than
``thread_threshold`` (tens of thousands of sockets), the next ones run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Container

from proxy.discovery import ListenerScanner, without
from proxy.listeners import Listener
from proxy.socket_counts import SocketCounts

log = logging.getLogger(__name__)

OnChange = Callable[[frozenset[Listener], frozenset[Listener]], None]
"""Called as ``on_change(added, removed)`` on the event loop, never with both empty."""


def _nothing() -> Container[int]:
    return frozenset()


class ListenerWatcher:
    """Keeps ``current`` (this namespace's listeners less excluded inodes) and reports changes.

    ``exclude`` is called at every dump and returns the inodes of the caller's own sockets
    (its mirrors): register a mirror's inode before it listens (``os.fstat(fd).st_ino`` is
    known right after socket()) and it is never reported.
    """

    def __init__(
        self,
        on_change: OnChange,
        exclude: Callable[[], Container[int]] = _nothing,
        *,
        probe_interval: float = 0.02,
        min_refresh_interval: float = 0.05,
        max_refresh_interval: float = 0.2,
        cpu_budget: float = 0.0025,
        confirm_delay: float = 0.01,
        thread_threshold: float = 0.005,
    ) -> None:
        self._on_change = on_change
        self._exclude = exclude
        self._probe_interval = probe_interval
        self._min_refresh = min_refresh_interval
        self._max_refresh = max_refresh_interval
        self._cpu_budget = cpu_budget
        self._confirm_delay = confirm_delay
        self._thread_threshold = thread_threshold
        self._current: frozenset[Listener] = frozenset()
        self._missing: frozenset[Listener] = frozenset()
        self._scanner: ListenerScanner | None = None
        self._counts: SocketCounts | None = None
        self._last_counts: tuple[bytes, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._poked = False
        self._in_thread: asyncio.Future[tuple[frozenset[Listener], float]] | None = None
        self._use_thread = False
        self._cost = 0.0
        self._next_refresh = 0.0
        self._confirm_at: float | None = None
        self._error: str | None = None
        self.scans = 0

    @property
    def current(self) -> frozenset[Listener]:
        """The listeners reported so far (added and not yet removed)."""
        return self._current

    @property
    def problems(self) -> list[str]:
        """What discovery cannot see right now and why (empty when all is well)."""
        found = self._scanner.problems if self._scanner else []
        return found + ([self._error] if self._error else [])

    @property
    def refresh_interval(self) -> float:
        """The current safety-net dump period, from the measured cost of a dump."""
        wanted = self._cost / self._cpu_budget if self._cpu_budget > 0 else self._max_refresh
        return min(self._max_refresh, max(self._min_refresh, wanted))

    async def start(self) -> None:
        """Take the first snapshot (reported as added) and start watching."""
        if self._task is not None:
            raise RuntimeError("ListenerWatcher.start() called twice")
        self._scanner = ListenerScanner()
        self._counts = SocketCounts()
        self._last_counts = self._counts.read()
        await self._scan_and_report()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="listener-watcher")

    async def stop(self) -> None:
        """Stop watching and release the netlink socket; ``current`` keeps its last value."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._in_thread is not None:
            await asyncio.wait([self._in_thread])
        if self._scanner is not None:
            self._scanner.close()
            self._scanner = None
        if self._counts is not None:
            self._counts.close()
            self._counts = None

    async def __aenter__(self) -> ListenerWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def poke(self) -> None:
        """Dump now instead of waiting for the next probe (e.g. after closing a mirror)."""
        self._poked = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._counts is not None
        while True:
            deadline = min(loop.time() + self._probe_interval, self._next_refresh)
            if self._confirm_at is not None:
                deadline = min(deadline, self._confirm_at)
            if not self._poked:
                await self._sleep_until(loop, deadline)
            poked, self._poked = self._poked, False
            counts = self._counts.read()
            now = loop.time()
            due = now >= self._next_refresh or (
                self._confirm_at is not None and now >= self._confirm_at
            )
            if poked or due or counts != self._last_counts:
                self._last_counts = counts
                await self._scan_and_report()

    async def _sleep_until(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        wake = self._wake = loop.create_future()
        handle = loop.call_at(deadline, _resolve, wake)
        try:
            await wake
        finally:
            handle.cancel()
            self._wake = None

    def _timed_scan(self) -> tuple[frozenset[Listener], float]:
        assert self._scanner is not None
        started = time.thread_time()
        found = self._scanner.scan()
        return found, time.thread_time() - started

    async def _scan_and_report(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._use_thread:
                # Shielded: stop() waits for a scan in flight before closing its socket.
                running = self._in_thread = loop.run_in_executor(None, self._timed_scan)
                found, cost = await asyncio.shield(running)
                self._in_thread = None
            else:
                found, cost = self._timed_scan()
        except OSError as exc:
            message = f"listener discovery failed, retrying: {exc}"
            if message != self._error:
                log.warning("%s", message)
            self._error = message
            self._next_refresh = loop.time() + self._max_refresh
            return
        self._error = None
        self.scans += 1
        self._use_thread = cost > self._thread_threshold
        self._cost = cost if self._cost == 0 else 0.7 * self._cost + 0.3 * cost
        now = loop.time()
        self._next_refresh = now + self.refresh_interval

        visible = without(found, self._exclude())
        added = visible - self._current
        missing = self._current - visible
        removed = missing & self._missing
        self._missing = missing - removed
        self._confirm_at = now + self._confirm_delay if self._missing else None
        if not added and not removed:
            return
        self._current = (self._current - removed) | added
        try:
            self._on_change(added, removed)
        except Exception:
            log.exception("listener change callback failed")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
