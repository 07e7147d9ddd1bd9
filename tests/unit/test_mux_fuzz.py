"""Property tests of the multiplexer: random and mutated input only ever raises
MuxProtocolError and never loops; random operation sequences between two multiplexers
deliver every stream's bytes exactly, in order, within the credit windows.

The opt-in long run repeats each property HOSTNET_FUZZ_EXAMPLES times (default 1,000,000):

    HOSTNET_FUZZ_EXAMPLES=1000000 .venv/bin/pytest -m fuzz_long tests/unit/test_mux_fuzz.py
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.mux import (
    Data,
    Multiplexer,
    MuxError,
    MuxEvent,
    MuxProtocolError,
    MuxState,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from proxy.mux.frames import FrameType, frame, u32
from tests.unit.byte_edits import mutate, split
from tests.unit.property_runs import run_property

FAST_EXAMPLES = 200
LONG_EXAMPLES = int(os.environ.get("HOSTNET_FUZZ_EXAMPLES", "1000000"))
WINDOW = 16 * 1024  # the smallest window, so fuzzed sessions hit flow control quickly


def recorded_daemon_stream() -> bytes:
    daemon = Multiplexer("daemon", initial_window=WINDOW)
    agent = Multiplexer("agent", initial_window=WINDOW)
    daemon.receive_data(agent.data_to_send())
    a = daemon.open_stream(b"tcp ::1 80")
    b = daemon.open_stream(b"udp 127.0.0.1 53")
    daemon.send_data(a, b"GET / HTTP/1.1\r\n\r\n")
    daemon.send_data(b, b"\0\4ping")
    daemon.ping(b"pingpong")
    stream = daemon.data_to_send()
    daemon.end_stream(a)
    daemon.reset_stream(b, 300)
    stream += daemon.data_to_send()
    stream += frame(FrameType.WINDOW, 2, u32(100))  # needs agent stream 2: opened below
    return stream


def make_agent() -> Multiplexer:
    agent = Multiplexer("agent", initial_window=WINDOW)
    agent.open_stream()  # stream 2, so the recorded WINDOW frame is valid
    return agent


SESSION = recorded_daemon_stream()


def feed(mux: Multiplexer, chunks: list[bytes], eof: bool) -> list[MuxEvent]:
    events: list[MuxEvent] = []
    budget = sum(len(c) for c in chunks) // 9 + 2 + len(mux.stream_ids) + 64
    try:
        for chunk in chunks:
            if chunk:
                events += mux.receive_data(chunk)
            mux.data_to_send()
        if eof:
            events += mux.receive_data(b"")
    except MuxProtocolError as exc:
        assert mux.state is MuxState.ERROR
        assert exc.message
        with pytest.raises(MuxProtocolError):
            mux.receive_data(b"x")
    assert len(events) <= budget
    return events


def test_recorded_session_is_valid() -> None:
    events = feed(make_agent(), [SESSION], eof=False)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "StreamOpened",
        "StreamOpened",
        "Data",
        "Data",
        "StreamReset",  # RESET is a control frame: it overtakes the END queued behind data
        "StreamEnded",
        "WindowUpdate",
    ]


def prop_random_after_prefix(prefix_len: int, data: bytes, cuts: list[int], eof: bool) -> None:
    prefix = SESSION[: prefix_len % (len(SESSION) + 1)]
    feed(make_agent(), split(prefix + data, cuts), eof)


def prop_mutated_session(edits: list[tuple[int, int, int]], cuts: list[int], eof: bool) -> None:
    data = mutate(SESSION, edits, max_delete=9, max_insert=9)
    feed(make_agent(), split(data, cuts), eof)


Op = tuple[int, int, int, int]


def prop_two_sides(ops: list[Op]) -> None:
    """Random opens, sends, ends, resets, acks and partial pumps between two multiplexers."""
    sides = {
        0: Multiplexer("daemon", initial_window=WINDOW),
        1: Multiplexer("agent", initial_window=WINDOW),
    }
    sent: dict[tuple[int, int], bytearray] = {}  # (sender side, stream) -> bytes sent
    got: dict[tuple[int, int], bytearray] = {}
    unacked: dict[tuple[int, int], int] = {}
    reset: set[int] = set()
    ended: set[tuple[int, int]] = set()
    pending: dict[int, bytearray] = {0: bytearray(), 1: bytearray()}  # bytes in flight to side
    counter = itertools.count()

    def handle(side: int, events: list[MuxEvent]) -> None:
        for event in events:
            if isinstance(event, Data):
                got.setdefault((1 - side, event.stream_id), bytearray()).extend(event.data)
                unacked[(side, event.stream_id)] = unacked.get((side, event.stream_id), 0) + len(
                    event.data
                )
            elif isinstance(event, StreamReset):
                reset.add(event.stream_id)
            elif isinstance(event, StreamEnded):
                ended.add((1 - side, event.stream_id))
            elif isinstance(event, StreamOpened):
                assert event.header == str(event.stream_id).encode()

    def streams(side: int) -> list[int]:
        return sides[side].stream_ids

    for action, side, pick, size in ops:
        mux = sides[side]
        ids = streams(side)
        sid = ids[pick % len(ids)] if ids else None
        try:
            if action == 0 and len(ids) < 6:
                new = mux._next_local_id  # the id open_stream will return
                assert mux.open_stream(str(new).encode()) == new
            elif action == 1 and sid is not None:
                data = bytes([next(counter) % 256]) * (size % 40000)
                mux.send_data(sid, data)
                sent.setdefault((side, sid), bytearray()).extend(data)
            elif action == 2 and sid is not None:
                mux.end_stream(sid)
            elif action == 3 and sid is not None and size % 4 == 0:
                mux.reset_stream(sid, 7)
                reset.add(sid)
            elif action == 4 and sid is not None:
                owed = unacked.get((side, sid), 0)
                if owed:
                    amount = 1 + size % owed
                    mux.acknowledge(sid, amount)
                    unacked[(side, sid)] = owed - amount
            elif action == 5:
                pending[1 - side] += mux.data_to_send(1 + size % 70000)
            elif action == 6 and pending[side]:
                cut = 1 + size % len(pending[side])
                chunk, pending[side] = bytes(pending[side][:cut]), pending[side][cut:]
                handle(side, mux.receive_data(chunk))
            elif action == 7:
                mux.ping()
        except MuxError as exc:
            assert not isinstance(exc, MuxProtocolError), exc
            assert action in (1, 2)  # a send or end on a stream that was just ended
    # settle: deliver everything, acknowledging all, until both sides are quiet
    for _ in range(10_000):
        moved = False
        for side in (0, 1):
            out = bytes(pending[side]) + sides[1 - side].data_to_send()
            pending[side] = bytearray()
            if out:
                moved = True
                handle(side, sides[side].receive_data(out))
            for (owner, sid), owed in list(unacked.items()):
                if owner == side and owed:
                    sides[side].acknowledge(sid, owed)
                    unacked[(owner, sid)] = 0
        if not moved:
            break
    else:
        raise AssertionError("did not settle")
    for key, data in sent.items():
        received = bytes(got.get(key, b""))
        if key[1] in reset:
            assert bytes(data).startswith(received)
        else:
            assert received == bytes(data), key
    for key, data in got.items():
        assert bytes(sent.get(key, b"")).startswith(bytes(data))


cuts = st.lists(st.integers(0, 2**16), max_size=10)
edits = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=6
)
ops = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 1), st.integers(0, 10), st.integers(0, 2**20)),
    max_size=60,
)

PROPERTIES: dict[str, Any] = {
    "random_after_prefix": given(
        st.integers(0, 2**16), st.binary(max_size=400), cuts, st.booleans()
    )(prop_random_after_prefix),
    "mutated_session": given(edits, cuts, st.booleans())(prop_mutated_session),
    "two_sides": given(ops)(prop_two_sides),
}


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property(name: str) -> None:
    run_property(PROPERTIES[name], FAST_EXAMPLES)


@pytest.mark.fuzz_long
@pytest.mark.timeout(0)
@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property_long(name: str) -> None:
    run_property(PROPERTIES[name], LONG_EXAMPLES, long=True)
