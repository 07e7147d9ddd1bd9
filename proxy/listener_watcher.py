"""Watch this network namespace's listeners and report additions and removals on asyncio.

There is no kernel event for listen(), so this polls, in two tiers:

- every ``probe_interval`` (20 ms) it reads the /proc/net/sockstat ``inuse`` counters (~4 us,
  see ``proxy.socket_counts``) and dumps the listeners only when they moved, or when poked;
  once no figure has moved for ``quiet_after`` (0.5 s), it probes every
  ``quiet_probe_interval`` (50 ms) instead, until one moves. A probe's wake-up costs more
  than its read (~90 us of CPU against ~15 us on a paravirtualised 2-core machine); the
  probing thread of an idle daemon or agent took 1.1 % of a core at 50 probes a second and
  0.45 % at 20, and it stays at 20 through a long transfer, whose sockets do not come and
  go. A listen() in a quiet namespace is found within 50 ms, inside the 100 ms detection
  target; where the hold runs (``proxy.hold``, as root) a first connect is held meanwhile,
  elsewhere it can be refused for those 50 ms instead of 20;
- while any per-namespace sockstat figure moved since the last dump (sockets used, in
  TIME_WAIT, in use: the namespace is busy), it dumps anyway every ``refresh_interval``, as a
  safety net for changes the ``inuse`` counters miss (a listen() and a close cancelling out
  within one probe, a bound UDP socket that connects). That period adapts to what a dump
  costs: ``cost / cpu_budget``, kept between 50 and 250 ms (the release target);
- while those figures stay the same (an idle namespace), the safety-net dump slows
  to ``quiet_refresh_interval`` (1 s): a change then needs events cancelling out in every
  figure at once (a listener closed and another opened within one probe), and it is still
  found within that second. Idle, 1,000 listeners cost ~0.5% of a core, mostly the probe.

Polling runs in a worker thread: a thread sleeping in poll(2) wakes for a fraction of what an
event loop iteration costs, the blocking netlink dumps never hold up the loop, and the loop
only runs when the set of sockets changed. The diff, the exclusion and ``on_change`` run on
the event loop.

A listener missing from one dump is only reported removed when a second dump,
``confirm_delay`` later, still misses it: a dump spanning several netlink reads is not atomic,
and a socket moving in the hash between two reads can be skipped once. That keeps a mirror from
flapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable, Container

from proxy.discovery import ListenerScanner, without
from proxy.listeners import Listener
from proxy.socket_counts import SocketCounts, inuse

log = logging.getLogger(__name__)

OnChange = Callable[[frozenset[Listener], frozenset[Listener]], None]
"""Called as ``on_change(added, removed)`` on the event loop, never with both empty."""


def _nothing() -> Container[int]:
    return frozenset()


class ListenerWatcher:
    """Keeps ``current`` (this namespace's listeners less excluded inodes) and reports changes.

    ``exclude`` is called on the event loop whenever the sockets changed and returns the
    inodes of the caller's own sockets (its mirrors). Register a mirror's inode before it
    listens (``os.fstat(fd).st_ino`` is known right after socket()) and it is never reported;
    after excluding a socket that is already open, call ``poke()``.
    """

    def __init__(
        self,
        on_change: OnChange,
        exclude: Callable[[], Container[int]] = _nothing,
        *,
        probe_interval: float = 0.02,
        quiet_probe_interval: float = 0.05,
        quiet_after: float = 0.5,
        min_refresh_interval: float = 0.05,
        max_refresh_interval: float = 0.25,
        quiet_refresh_interval: float = 1.0,
        cpu_budget: float = 0.0025,
        confirm_delay: float = 0.01,
    ) -> None:
        self._on_change = on_change
        self._exclude = exclude
        self._probe_interval = probe_interval
        self._quiet_probe = max(quiet_probe_interval, probe_interval)
        self._quiet_after = quiet_after
        self._min_refresh = min_refresh_interval
        self._max_refresh = max_refresh_interval
        self._quiet_refresh = max(quiet_refresh_interval, max_refresh_interval)
        self._cpu_budget = cpu_budget
        self._confirm_delay = confirm_delay
        self._current: frozenset[Listener] = frozenset()
        self._missing: frozenset[Listener] = frozenset()
        self._scanner: ListenerScanner | None = None
        self._counts: SocketCounts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake_fd = -1
        self._stopping = False
        self._cost = 0.0
        self._error: str | None = None
        self.scans = 0
        self.probes = 0

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

    def probe_period(self, quiet_for: float) -> float:
        """Seconds between probes once no socket figure has moved for ``quiet_for``."""
        return self._quiet_probe if quiet_for >= self._quiet_after else self._probe_interval

    async def start(self) -> None:
        """Take the first snapshot (reported as added) and start watching."""
        if self._loop is not None:
            raise RuntimeError("ListenerWatcher.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._scanner = ListenerScanner()
        self._counts = SocketCounts()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        figures = self._counts.read()
        found = await asyncio.to_thread(self._timed_scan)
        self._apply(found)
        self._thread = threading.Thread(
            target=self._poll, args=(figures, found), name="listener-watcher", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop watching and release the netlink socket; ``current`` keeps its last value."""
        self._stopping = True
        self.poke()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1
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
        """Dump now and re-apply the exclusion (e.g. after excluding an open socket).

        Safe to call from any thread.
        """
        if self._wake_fd >= 0:
            os.eventfd_write(self._wake_fd, 1)

    def adopt(self, found: frozenset[Listener]) -> None:
        """Listeners a targeted check just found: reported now, before the next scan.

        That scan confirms them, or reports them removed as usual if they are gone by then.
        Call on the event loop.
        """
        added = without(found, self._exclude()) - self._current
        if not added:
            return
        self._current |= added
        self.poke()
        try:
            self._on_change(added, frozenset())
        except Exception:
            log.exception("listener change callback failed")

    # --- worker thread ---------------------------------------------------------------------

    def _timed_scan(self) -> frozenset[Listener]:
        assert self._scanner is not None
        started = time.thread_time()
        found = self._scanner.scan()
        cost = time.thread_time() - started
        self._cost = cost if self._cost == 0 else 0.7 * self._cost + 0.3 * cost
        self.scans += 1
        return found

    def _poll(self, figures: tuple[bytes, ...], posted: frozenset[Listener]) -> None:
        assert self._counts is not None and self._loop is not None
        loop = self._loop
        counts = inuse(figures)  # at the last dump
        last_dump = moved_at = time.monotonic()
        active = False  # sockstat moved since the last dump
        failing = False
        # A poll() on an eventfd: one syscall per probe, a third of what threading.Event costs.
        poller = select.poll()
        poller.register(self._wake_fd, select.POLLIN)
        while True:
            period = self.refresh_interval if active else self._quiet_refresh
            now = time.monotonic()
            wait = min(self.probe_period(now - moved_at), last_dump + period - now)
            forced = bool(poller.poll(max(0, math.ceil(wait * 1000))))
            if self._stopping:
                return
            if forced:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            now_figures = self._counts.read()
            self.probes += 1
            if now_figures != figures:
                figures, active = now_figures, True
                moved_at = time.monotonic()
            now_counts = inuse(figures)
            period = self.refresh_interval if active else self._quiet_refresh
            due = time.monotonic() >= last_dump + period
            if not (forced or due or now_counts != counts):
                continue
            counts, active, last_dump = now_counts, False, time.monotonic()
            try:
                found = self._timed_scan()
            except OSError as exc:
                if not failing:
                    log.warning("listener discovery failed, retrying: %s", exc)
                failing = True
                loop.call_soon_threadsafe(self._set_error, f"listener discovery failed: {exc}")
                continue
            if failing:
                failing = False
                loop.call_soon_threadsafe(self._set_error, None)
            if forced or found is not posted:
                posted = found
                loop.call_soon_threadsafe(self._apply, found)

    # --- event loop ------------------------------------------------------------------------

    def _set_error(self, message: str | None) -> None:
        self._error = message

    def _apply(self, found: frozenset[Listener]) -> None:
        if self._stopping:
            return
        visible = without(found, self._exclude())
        added = visible - self._current
        missing = self._current - visible
        removed = missing & self._missing
        self._missing = missing - removed
        if self._missing and self._loop is not None:
            self._loop.call_later(self._confirm_delay, self.poke)
        if not added and not removed:
            return
        self._current = (self._current - removed) | added
        try:
            self._on_change(added, removed)
        except Exception:
            log.exception("listener change callback failed")
