"""The host's pings over a real multiplexer session: a guest that answers stays, one that
stops reading its end (as a frozen guest does) is found silent after the stated misses."""

from __future__ import annotations

import asyncio
import socket
import time

from vm.transport.mux_liveness import Liveness
from vm.transport.mux_session import MuxSession

INTERVAL = 0.05
MISSED = 4


async def sessions() -> tuple[MuxSession, MuxSession, socket.socket, socket.socket]:
    host_end, guest_end = socket.socketpair()
    for sock in (host_end, guest_end):
        sock.setblocking(False)
    host = MuxSession(host_end.fileno(), "daemon")
    guest = MuxSession(guest_end.fileno(), "agent", lambda sock, header: sock.close())
    host.start()
    guest.start()
    await asyncio.wait_for(host.peer_ready.wait(), 2)
    return host, guest, host_end, guest_end


async def test_a_guest_that_answers_is_never_found_silent() -> None:
    host, guest, host_end, guest_end = await sessions()
    liveness = Liveness(INTERVAL, MISSED)
    watch = asyncio.create_task(liveness.watch(host))
    try:
        await asyncio.sleep(INTERVAL * MISSED * 3)
        assert host.alive and liveness.silent is None
    finally:
        watch.cancel()
        host.close()
        guest.close()
        host_end.close()
        guest_end.close()


async def test_a_guest_that_stops_answering_is_found_silent_after_the_timeout() -> None:
    host, guest, host_end, guest_end = await sessions()
    liveness = Liveness(INTERVAL, MISSED)
    watch = asyncio.create_task(liveness.watch(host))
    try:
        await asyncio.sleep(INTERVAL * 2)
        # The guest stops reading its end: its pongs stop, its socket stays open (no EOF).
        asyncio.get_running_loop().remove_reader(guest_end.fileno())
        stopped = time.monotonic()
        await asyncio.wait_for(host.finished.wait(), 5)
        took = time.monotonic() - stopped
    finally:
        watch.cancel()
        host.close()
        guest.close()
        host_end.close()
        guest_end.close()
    assert liveness.silent is not None and "did not answer the host's pings" in liveness.silent
    assert host.reason == liveness.silent
    assert took >= INTERVAL * (MISSED - 1), took


async def test_a_new_session_that_answers_clears_the_silence() -> None:
    liveness = Liveness(INTERVAL, MISSED)
    liveness.silent = "the guest did not answer"
    host, guest, host_end, guest_end = await sessions()
    watch = asyncio.create_task(liveness.watch(host))
    try:
        await asyncio.sleep(INTERVAL)
        assert liveness.silent is None
    finally:
        watch.cancel()
        host.close()
        guest.close()
        host_end.close()
        guest_end.close()
