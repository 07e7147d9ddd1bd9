"""Property tests of the wire protocol: random, truncated and mutated input only ever raises
ProtocolError, never loops, and every valid message round-trips.

Fast by default (a few hundred examples each). The opt-in long run repeats every property
with HOSTNET_FUZZ_EXAMPLES examples (default 1,000,000):

    HOSTNET_FUZZ_EXAMPLES=1000000 .venv/bin/pytest -m fuzz_long tests/unit/test_wire_fuzz.py
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.wire import (
    NEED_DATA,
    PAUSED,
    Attach,
    Connection,
    DatagramDecoder,
    Error,
    ErrorCode,
    Listener,
    Listeners,
    Message,
    Open,
    OpenOk,
    ProtocolError,
    Request,
    Response,
    State,
    StreamFailed,
    StreamRequest,
    decode_payload,
    encode_datagram,
    encode_frame,
)
from tests.unit.byte_edits import mutate, split
from tests.unit.property_runs import run_property

SECRET = b"s" * 32
DAEMON_NONCE = b"d" * 32
AGENT_NONCE = b"a" * 32
FAST_EXAMPLES = 300
LONG_EXAMPLES = int(os.environ.get("HOSTNET_FUZZ_EXAMPLES", "1000000"))

# -- strategies -------------------------------------------------------------------------------

hosts = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["0.0.0.0", "::", "127.0.0.1", "::1", "fe80::1%eth0", "fe80::2%7"]),
)
protos = st.sampled_from(["tcp", "udp"])
ports = st.integers(1, 65535)
listeners = st.builds(Listener, protos, hosts, ports)
codes = st.sampled_from(list(ErrorCode))
short_text = st.text(max_size=60)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | short_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=20,
)
methods = st.from_regex(r"[a-z][a-z0-9_.\-]{0,20}", fullmatch=True)
control_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Listeners,
        st.lists(listeners, max_size=5).map(tuple),
        st.lists(listeners, max_size=5).map(tuple),
    ),
    st.builds(StreamRequest, st.integers(1, 2**32 - 1), protos, hosts, ports),
    st.builds(StreamFailed, st.integers(1, 2**32 - 1), codes, short_text),
    st.builds(
        Request,
        st.integers(0, 2**32 - 1),
        methods,
        st.dictionaries(short_text, json_values, max_size=4),
    ),
    st.builds(Response, st.integers(0, 2**32 - 1), st.booleans(), json_values),
)
all_messages: st.SearchStrategy[Message] = st.one_of(
    control_messages,
    st.builds(Open, protos, hosts, ports),
    st.builds(Attach, st.integers(1, 2**32 - 1)),
    st.just(OpenOk()),
    st.builds(Error, codes, short_text),
)

# -- helpers ----------------------------------------------------------------------------------


def feed_all(conn: Connection, chunks: list[bytes], *, eof: bool) -> list[Any]:
    """Feed chunks; return events. Asserts the only exception is ProtocolError and that the
    number of events is bounded by the input size (so nothing loops)."""
    events: list[Any] = []
    budget = sum(len(c) for c in chunks) // 5 + 3
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            if chunk or eof:
                conn.receive_data(chunk)
            while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
                events.append(event)
                assert len(events) <= budget, "more events than the input can hold"
            conn.data_to_send()
    except ProtocolError as exc:
        assert conn.state is State.ERROR or exc.local
        assert isinstance(exc.code, ErrorCode)
        assert exc.message
        if conn.state is State.ERROR:
            with pytest.raises(ProtocolError):
                conn.next_event()
    return events


def recorded_session(
    purpose: str, messages: list[Message]
) -> tuple[bytes, Callable[[], Connection]]:
    """The byte stream a daemon sends in a full session, and a factory of agents that accept it."""
    daemon = Connection("daemon", purpose, SECRET, nonce=DAEMON_NONCE)  # type: ignore[arg-type]
    agent = Connection("agent", purpose, SECRET, nonce=AGENT_NONCE)  # type: ignore[arg-type]
    stream = daemon.initiate()
    daemon.receive_data(agent.initiate())
    agent.receive_data(stream)
    for _ in range(3):
        while daemon.next_event() is not NEED_DATA:
            pass
        while agent.next_event() is not NEED_DATA:
            pass
        out = daemon.data_to_send()
        stream += out
        if out:
            agent.receive_data(out)
        back = agent.data_to_send()
        if back:
            daemon.receive_data(back)
    assert daemon.state is State.READY
    for message in messages:
        stream += daemon.send(message)
    return stream, lambda: Connection("agent", purpose, SECRET, nonce=AGENT_NONCE)  # type: ignore[arg-type]


CONTROL_STREAM, CONTROL_AGENT = recorded_session(
    "control",
    [
        Listeners((Listener("tcp", "0.0.0.0", 80), Listener("udp", "fe80::1%eth0", 53)), ()),
        Request(1, "exec", {"argv": ["true"], "tty": False}),
        Response(2, True, {"n": [1, 2.5, None, "x"]}),
        StreamRequest(3, "tcp", "127.0.0.1", 5432),
        StreamFailed(3, ErrorCode.REFUSED, "refused"),
    ],
)
STREAM_STREAM, STREAM_AGENT = recorded_session("stream", [Open("tcp", "::1", 8080)])


def test_recorded_sessions_are_valid() -> None:
    events = feed_all(CONTROL_AGENT(), [CONTROL_STREAM], eof=True)
    assert len(events) == 7  # Ready, five messages, ConnectionClosed
    agent = STREAM_AGENT()
    assert [type(e).__name__ for e in feed_all(agent, [STREAM_STREAM], eof=False)] == [
        "Ready",
        "Open",
    ]
    assert agent.state is State.ACCEPTING


# -- properties -------------------------------------------------------------------------------


def prop_random_bytes(role: str, purpose: str, data: bytes, cuts: list[int], eof: bool) -> None:
    conn = Connection(role, purpose, SECRET)  # type: ignore[arg-type]
    feed_all(conn, split(data, cuts), eof=eof)


def prop_random_after_valid_prefix(which: str, prefix_len: int, data: bytes, eof: bool) -> None:
    stream, make = (
        (CONTROL_STREAM, CONTROL_AGENT) if which == "control" else (STREAM_STREAM, STREAM_AGENT)
    )
    prefix = stream[: prefix_len % (len(stream) + 1)]
    feed_all(make(), [prefix, data], eof=eof)


def prop_mutated_session(
    which: str, edits: list[tuple[int, int, int]], cuts: list[int], eof: bool
) -> None:
    stream, make = (
        (CONTROL_STREAM, CONTROL_AGENT) if which == "control" else (STREAM_STREAM, STREAM_AGENT)
    )
    data = mutate(stream, edits, max_delete=8, max_insert=5)
    feed_all(make(), split(data, cuts), eof=eof)


def prop_decode_payload(kind: int, payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_payload(kind, payload)


def prop_round_trip(message: Message) -> None:
    frame = encode_frame(message)
    assert decode_payload(frame[0], frame[5:]) == message


def prop_control_messages_through_connections(messages: list[Message], cuts: list[int]) -> None:
    stream, make = recorded_session("control", messages)
    events = feed_all(make(), split(stream, cuts), eof=False)
    assert events[1:] == messages


def prop_datagrams(datagrams: list[bytes], cuts: list[int], noise: bytes) -> None:
    stream = b"".join(encode_datagram(d) for d in datagrams)
    decoder = DatagramDecoder()
    out: list[bytes] = []
    for chunk in split(stream, cuts):
        if chunk:  # b"" would mean the end of input
            out += decoder.feed(chunk)
    assert out == datagrams
    try:
        decoder.feed(noise)
        decoder.feed(b"")
    except ProtocolError:
        pass


roles = st.sampled_from(["daemon", "agent"])
purposes = st.sampled_from(["control", "stream"])
cut_lists = st.lists(st.integers(0, 2**16), max_size=12)
edit_lists = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=6
)

PROPERTIES: dict[str, Any] = {
    "random_bytes": given(roles, purposes, st.binary(max_size=600), cut_lists, st.booleans())(
        prop_random_bytes
    ),
    "random_after_valid_prefix": given(
        purposes, st.integers(0, 2**16), st.binary(max_size=300), st.booleans()
    )(prop_random_after_valid_prefix),
    "mutated_session": given(purposes, edit_lists, cut_lists, st.booleans())(prop_mutated_session),
    "decode_payload": given(st.integers(0, 255), st.binary(max_size=300))(prop_decode_payload),
    "round_trip": given(all_messages)(prop_round_trip),
    "control_messages_through_connections": given(
        st.lists(control_messages, max_size=6), cut_lists
    )(prop_control_messages_through_connections),
    "datagrams": given(
        st.lists(st.binary(max_size=300), max_size=8), cut_lists, st.binary(max_size=20)
    )(prop_datagrams),
}


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property(name: str) -> None:
    run_property(PROPERTIES[name], FAST_EXAMPLES)


@pytest.mark.fuzz_long
@pytest.mark.timeout(0)
@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property_long(name: str) -> None:
    run_property(PROPERTIES[name], LONG_EXAMPLES, long=True)
