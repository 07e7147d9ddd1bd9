"""The sans-I/O multiplexer: streams, credit windows, fairness, half-close, reset, bounds."""

from __future__ import annotations

from collections import Counter

import pytest

from proxy.mux import (
    DEFAULT_INITIAL_WINDOW,
    MAX_DATA_BYTES,
    ConnectionLost,
    Data,
    GoAway,
    Multiplexer,
    MuxErrorCode,
    MuxEvent,
    MuxLimitError,
    MuxState,
    PingAcknowledged,
    StreamClosedError,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdate,
)


def pump(
    a: Multiplexer, b: Multiplexer, *, chunk: int | None = None
) -> tuple[list[MuxEvent], list[MuxEvent]]:
    """Move bytes both ways until neither side has anything to send; events seen by a and b."""
    seen_a: list[MuxEvent] = []
    seen_b: list[MuxEvent] = []
    for _ in range(10_000):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if not to_a and not to_b:
            return seen_a, seen_b
        for data, target, seen in ((to_b, b, seen_b), (to_a, a, seen_a)):
            step = chunk or max(1, len(data))
            for i in range(0, len(data), step):
                seen += target.receive_data(data[i : i + step])
    raise AssertionError("pump did not settle")


def pair(**kwargs: int) -> tuple[Multiplexer, Multiplexer]:
    daemon, agent = Multiplexer("daemon", **kwargs), Multiplexer("agent", **kwargs)
    assert pump(daemon, agent) == ([], [])
    assert daemon.peer_initial_window == agent.peer_initial_window
    return daemon, agent


def received(events: list[MuxEvent], stream_id: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data) and e.stream_id == stream_id)


def ack_all(mux: Multiplexer, events: list[MuxEvent]) -> None:
    for event in events:
        if isinstance(event, Data):
            mux.acknowledge(event.stream_id, len(event.data))


def test_stream_lifecycle_both_directions() -> None:
    daemon, agent = pair()
    sid = daemon.open_stream(b"tcp 127.0.0.1:8080")
    assert sid % 2 == 1
    daemon.send_data(sid, b"hello ")
    daemon.send_data(sid, b"agent")
    daemon.end_stream(sid)
    seen_daemon, seen_agent = pump(daemon, agent)
    assert seen_agent == [
        StreamOpened(sid, b"tcp 127.0.0.1:8080"),
        Data(sid, b"hello agent"),
        StreamEnded(sid),
    ]
    assert seen_daemon == []
    # half-closed: the other direction still works
    agent.send_data(sid, b"reply")
    agent.end_stream(sid)
    seen_daemon, _ = pump(daemon, agent)
    assert seen_daemon == [Data(sid, b"reply"), StreamEnded(sid)]
    assert daemon.stream_ids == [] and agent.stream_ids == []
    agent_sid = agent.open_stream()
    assert agent_sid % 2 == 0
    assert pump(daemon, agent)[0] == [StreamOpened(agent_sid, b"")]


def test_byte_at_a_time_delivery_is_exact() -> None:
    daemon, agent = Multiplexer("daemon"), Multiplexer("agent")
    sid = daemon.open_stream(b"h")
    payload = bytes(range(256)) * 300
    daemon.send_data(sid, payload)  # before the peer's SETTINGS: queued
    daemon.end_stream(sid)
    _, seen = pump(daemon, agent, chunk=1)
    assert received(seen, sid) == payload
    assert seen[-1] == StreamEnded(sid)


def test_sender_stops_at_the_window_and_resumes_on_acknowledge() -> None:
    daemon, agent = pair()
    sid = daemon.open_stream()
    daemon.send_data(sid, b"x" * (1024 * 1024))
    _, seen = pump(daemon, agent)
    assert len(received(seen, sid)) == DEFAULT_INITIAL_WINDOW
    assert daemon.send_window(sid) == 0
    assert daemon.send_buffered(sid) == 1024 * 1024 - DEFAULT_INITIAL_WINDOW
    assert all(len(e.data) <= MAX_DATA_BYTES for e in seen if isinstance(e, Data))
    agent.acknowledge(sid, 1000)  # below a quarter window: no WINDOW frame yet
    assert agent.data_to_send() == b""
    agent.acknowledge(sid, DEFAULT_INITIAL_WINDOW // 4 - 1000)
    seen_daemon, seen = pump(daemon, agent)
    assert seen_daemon == [WindowUpdate(sid, DEFAULT_INITIAL_WINDOW // 4)]
    assert len(received(seen, sid)) == DEFAULT_INITIAL_WINDOW // 4
    with pytest.raises(Exception, match="unacknowledged"):
        agent.acknowledge(sid, DEFAULT_INITIAL_WINDOW + 1)


def test_stalled_reader_stalls_only_its_own_stream() -> None:
    daemon, agent = pair()
    fast, stalled = daemon.open_stream(), daemon.open_stream()
    total = 3 * 1024 * 1024
    got: Counter[int] = Counter()
    sent = {fast: 0, stalled: 0}
    for _ in range(2000):
        for sid in (fast, stalled):
            if sent[sid] < total and daemon.send_buffered(sid) < 512 * 1024:
                daemon.send_data(sid, b"y" * 65536)
                sent[sid] += 65536
        _, seen = pump(daemon, agent)
        for event in seen:
            if isinstance(event, Data):
                got[event.stream_id] += len(event.data)
                if event.stream_id == fast:  # only the fast reader consumes
                    agent.acknowledge(fast, len(event.data))
        if got[fast] == total:
            break
    assert got[fast] == total
    assert got[stalled] == DEFAULT_INITIAL_WINDOW


def test_busy_streams_share_the_link_equally() -> None:
    daemon, agent = pair()
    streams = [daemon.open_stream() for _ in range(3)]
    agent.receive_data(daemon.data_to_send())
    for sid in streams:
        daemon.send_data(sid, b"z" * DEFAULT_INITIAL_WINDOW)
    share: Counter[int] = Counter()
    for _ in range(8):  # the writer pulls 64 KiB at a time, as a transport would take it
        for event in agent.receive_data(daemon.data_to_send(64 * 1024)):
            if isinstance(event, Data):
                share[event.stream_id] += len(event.data)
    counts = [share[sid] for sid in streams]
    assert sum(counts) >= 8 * 60 * 1024
    assert max(counts) - min(counts) <= MAX_DATA_BYTES


def test_reset_drops_queued_data_and_ignores_frames_in_flight() -> None:
    daemon, agent = pair()
    sid = daemon.open_stream()
    pump(daemon, agent)
    agent.send_data(sid, b"in flight")
    in_flight = agent.data_to_send()
    daemon.send_data(sid, b"never sent" * 1000)
    daemon.reset_stream(sid, MuxErrorCode.CONNECTION_RESET)
    assert daemon.receive_data(in_flight) == []  # data for a stream we reset: dropped
    _, seen = pump(daemon, agent)
    assert seen == [StreamReset(sid, MuxErrorCode.CONNECTION_RESET)]
    assert daemon.stream_ids == [] == agent.stream_ids
    for call in (lambda: daemon.send_data(sid, b"x"), lambda: agent.end_stream(sid)):
        with pytest.raises(StreamClosedError):
            call()
    daemon.reset_stream(sid)  # resetting again is harmless
    agent.acknowledge(sid, 5)  # acknowledging after a reset is harmless
    assert daemon.data_to_send() == b"" and agent.data_to_send() == b""


def test_send_after_end_is_refused() -> None:
    daemon, _ = pair()
    sid = daemon.open_stream()
    daemon.end_stream(sid)
    with pytest.raises(StreamClosedError):
        daemon.send_data(sid, b"late")


def test_stream_count_bound_refuses_new_streams() -> None:
    daemon, _ = pair(max_streams=2)
    first, second = daemon.open_stream(), daemon.open_stream()
    with pytest.raises(MuxLimitError):
        daemon.open_stream()
    # the agent side enforces its own bound: craft a third OPEN from a daemon without the limit
    loose = Multiplexer("daemon")
    agent2 = Multiplexer("agent", max_streams=2)
    pump(loose, agent2)
    ids = [loose.open_stream() for _ in range(3)]
    seen_loose, seen_agent = pump(loose, agent2)
    assert [e for e in seen_agent if isinstance(e, StreamOpened)] == [
        StreamOpened(i, b"") for i in ids[:2]
    ]
    assert seen_loose == [StreamReset(ids[2], MuxErrorCode.REFUSED_STREAM)]
    assert {first, second} == set(daemon.stream_ids)


def test_receive_buffer_bound_refuses_new_streams() -> None:
    window = 64 * 1024
    daemon = Multiplexer("daemon", initial_window=window)
    agent = Multiplexer("agent", initial_window=window, max_receive_buffer=3 * window)
    pump(daemon, agent)
    ids = [daemon.open_stream() for _ in range(4)]
    seen_daemon, seen_agent = pump(daemon, agent)
    assert len([e for e in seen_agent if isinstance(e, StreamOpened)]) == 3
    assert seen_daemon == [StreamReset(ids[3], MuxErrorCode.REFUSED_STREAM)]


def test_send_buffer_and_header_bounds() -> None:
    daemon = Multiplexer("daemon", max_send_buffer=100_000)
    sid = daemon.open_stream()
    daemon.send_data(sid, b"a" * 100_000)
    with pytest.raises(MuxLimitError, match="send_buffered"):
        daemon.send_data(sid, b"a")
    with pytest.raises(MuxLimitError, match="header"):
        daemon.open_stream(b"h" * 4097)
    with pytest.raises(ValueError):
        Multiplexer("daemon", initial_window=1000)


def test_ping_is_answered() -> None:
    daemon, agent = pair()
    payload = daemon.ping()
    assert pump(daemon, agent) == ([PingAcknowledged(payload)], [])
    assert agent.ping(b"12345678") == b"12345678"
    assert pump(daemon, agent) == ([], [PingAcknowledged(b"12345678")])


def test_go_away_refuses_new_streams_and_keeps_old_ones() -> None:
    daemon, agent = pair()
    old = daemon.open_stream()
    pump(daemon, agent)
    racing = daemon.open_stream()  # its OPEN crosses the agent's GOAWAY
    agent.go_away()
    assert agent.state is MuxState.GOING_AWAY
    seen_daemon, seen_agent = pump(daemon, agent)
    assert GoAway(old, MuxErrorCode.NO_ERROR) in seen_daemon
    assert StreamReset(racing, MuxErrorCode.REFUSED_STREAM) in seen_daemon
    assert not any(isinstance(e, StreamOpened) for e in seen_agent)
    with pytest.raises(MuxLimitError):
        daemon.open_stream()
    daemon.send_data(old, b"still works")
    assert pump(daemon, agent)[1] == [Data(old, b"still works")]


def test_end_of_input_resets_every_stream() -> None:
    daemon, agent = pair()
    a, b = daemon.open_stream(), daemon.open_stream()
    pump(daemon, agent)
    events = agent.receive_data(b"")
    assert events == [
        StreamReset(a, MuxErrorCode.CONNECTION_LOST),
        StreamReset(b, MuxErrorCode.CONNECTION_LOST),
        ConnectionLost(),
    ]
    assert agent.state is MuxState.CLOSED
    assert agent.receive_data(b"more") == []


def test_window_grant_is_not_sent_after_peer_end() -> None:
    daemon, agent = pair()
    sid = daemon.open_stream()
    daemon.send_data(sid, b"q" * DEFAULT_INITIAL_WINDOW)
    daemon.end_stream(sid)
    _, seen = pump(daemon, agent)
    ack_all(agent, seen)
    assert agent.data_to_send() == b""  # nothing more will come: no credit needed


def test_small_pulls_never_send_stream_frames_before_the_open() -> None:
    """Found by the long fuzz run: a pull too small for the OPEN let the END overtake it."""
    daemon, agent = Multiplexer("daemon"), Multiplexer("agent")
    sid = daemon.open_stream()
    daemon.end_stream(sid)
    seen: list[MuxEvent] = []
    agent.receive_data(daemon.data_to_send(20))  # SETTINGS (19 bytes) only
    daemon.receive_data(agent.data_to_send())
    while out := daemon.data_to_send(10):
        seen += agent.receive_data(out)
    assert seen == [StreamOpened(sid, b""), StreamEnded(sid)]
