"""The wire connection state machine, driven by bytes between a daemon side and an agent side."""

from __future__ import annotations

import struct

import pytest

from proxy.wire import (
    NEED_DATA,
    PAUSED,
    Attach,
    Connection,
    ConnectionClosed,
    Error,
    ErrorCode,
    Event,
    Listener,
    Listeners,
    Open,
    OpenEngine,
    OpenOk,
    ProtocolError,
    Purpose,
    Ready,
    Request,
    Response,
    State,
    StreamFailed,
    StreamRequest,
    encode_frame,
)
from proxy.wire.limits import MAX_CONTROL_PAYLOAD, MAX_HANDSHAKE_PAYLOAD, MAX_STREAM_SETUP_PAYLOAD

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))


def drain(conn: Connection) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
        events.append(event)  # type: ignore[arg-type]
    return events


def deliver(
    source: Connection, target: Connection, *, one_byte_at_a_time: bool = False
) -> list[Event]:
    """Move every pending byte from `source` to `target`; return the events `target` produced."""
    data = source.data_to_send()
    events: list[Event] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if one_byte_at_a_time else [data]
    for chunk in chunks:
        if chunk:
            target.receive_data(chunk)
        events += drain(target)
    return events


def connected_pair(
    purpose: Purpose, *, one_byte_at_a_time: bool = False
) -> tuple[Connection, Connection]:
    daemon = Connection("daemon", purpose, SECRET)
    agent = Connection("agent", purpose, SECRET)
    events: dict[str, list[Event]] = {"daemon": [], "agent": []}
    for _ in range(3):
        events["agent"] += deliver(daemon, agent, one_byte_at_a_time=one_byte_at_a_time)
        events["daemon"] += deliver(agent, daemon, one_byte_at_a_time=one_byte_at_a_time)
    assert events == {"daemon": [Ready(1)], "agent": [Ready(1)]}
    assert daemon.state is agent.state is State.READY
    assert not daemon.data_to_send() and not agent.data_to_send()
    return daemon, agent


@pytest.mark.parametrize("purpose", ["control", "stream"])
@pytest.mark.parametrize("one_byte_at_a_time", [False, True])
def test_handshake_completes_both_ways(purpose: Purpose, one_byte_at_a_time: bool) -> None:
    connected_pair(purpose, one_byte_at_a_time=one_byte_at_a_time)


def test_handshake_takes_three_flights_and_reports_peer_version() -> None:
    daemon = Connection("daemon", "control", SECRET)
    agent = Connection("agent", "control", SECRET)
    agent.receive_data(daemon.initiate())
    daemon.receive_data(agent.initiate())
    assert drain(agent) == [] and drain(daemon) == []  # both now sent Auth
    assert agent.state is daemon.state is State.AUTH
    assert deliver(daemon, agent) == []  # agent verifies, sends AuthOk
    assert deliver(agent, daemon) == [Ready(1)]  # daemon gets Auth + AuthOk
    assert deliver(daemon, agent) == [Ready(1)]
    assert daemon.peer_version == agent.peer_version == 1


def test_control_messages_flow_both_ways() -> None:
    daemon, agent = connected_pair("control")
    sent_by_agent = [
        Listeners((Listener("tcp", "0.0.0.0", 8080),), (Listener("udp", "::", 53),)),
        StreamRequest(3, "tcp", "127.0.0.1", 5432),
        Request(1, "ping", {}),
        Response(9, True, {"pong": True}),
    ]
    for message in sent_by_agent:
        daemon.receive_data(agent.send(message))
    assert drain(daemon) == sent_by_agent
    sent_by_daemon = [
        Request(9, "ping"),
        StreamFailed(3, ErrorCode.REFUSED, "127.0.0.1:5432 refused"),
        Listeners(added=(Listener("tcp", "127.0.0.1", 5432),)),
        Response(1, False, "unknown method"),
    ]
    agent.receive_data(b"".join(daemon.send(m) for m in sent_by_daemon))
    assert drain(agent) == sent_by_daemon
    assert daemon.state is agent.state is State.READY


def test_control_error_closes_and_end_of_input_is_reported() -> None:
    daemon, agent = connected_pair("control")
    agent.receive_data(daemon.send(Error(ErrorCode.INTERNAL, "daemon shutting down")))
    assert daemon.state is State.CLOSED
    assert drain(agent) == [Error(ErrorCode.INTERNAL, "daemon shutting down")]
    assert agent.state is State.CLOSED
    assert agent.next_event() is PAUSED

    daemon, agent = connected_pair("control")
    agent.receive_data(b"")
    assert drain(agent) == [ConnectionClosed()]
    assert agent.state is State.CLOSED


@pytest.mark.parametrize("opener", [Open("tcp", "::1", 8080), Attach(17), OpenEngine()])
def test_stream_open_switches_to_raw_and_keeps_trailing_bytes(
    opener: Open | Attach | OpenEngine,
) -> None:
    daemon, agent = connected_pair("stream")
    agent.receive_data(daemon.send(opener))
    assert daemon.state is State.OPENING
    assert drain(agent) == [opener]
    assert agent.state is State.ACCEPTING
    # The agent answers and its first raw bytes arrive in the same read as the OpenOk.
    daemon.receive_data(agent.send(OpenOk()) + b"SSH-2.0-OpenSSH\r\n")
    assert agent.state is State.RAW
    assert agent.take_trailing_data() == b""
    assert daemon.next_event() == OpenOk()
    assert daemon.state is State.RAW
    assert daemon.next_event() is PAUSED
    assert daemon.take_trailing_data() == b"SSH-2.0-OpenSSH\r\n"
    assert daemon.take_trailing_data() == b""


def test_trailing_bytes_survive_one_byte_at_a_time_delivery() -> None:
    daemon, agent = connected_pair("stream", one_byte_at_a_time=True)
    for byte in daemon.send(Open("tcp", "127.0.0.1", 22)):
        agent.receive_data(bytes([byte]))
    assert drain(agent) == [Open("tcp", "127.0.0.1", 22)]
    events: list[Event] = []
    for byte in agent.send(OpenOk()) + b"xyz":
        daemon.receive_data(bytes([byte]))
        events += drain(daemon)
    assert events == [OpenOk()]
    assert daemon.take_trailing_data() == b"xyz"


def test_stream_open_refused_with_error() -> None:
    daemon, agent = connected_pair("stream")
    agent.receive_data(daemon.send(Open("tcp", "127.0.0.1", 81)))
    drain(agent)
    refusal = Error(ErrorCode.NOT_LISTENING, "nothing listens on tcp 127.0.0.1:81 in the VM")
    daemon.receive_data(agent.send(refusal))
    assert drain(daemon) == [refusal]
    assert daemon.state is agent.state is State.CLOSED


@pytest.mark.parametrize("agent_secret", [OTHER_SECRET, SECRET[:16] + bytes(16)])
def test_wrong_secret_is_refused_by_both_sides(agent_secret: bytes) -> None:
    daemon = Connection("daemon", "control", SECRET)
    agent = Connection("agent", "control", agent_secret)
    agent.receive_data(daemon.initiate())
    daemon.receive_data(agent.initiate())
    drain(agent)
    drain(daemon)
    daemon_auth, agent_auth = daemon.data_to_send(), agent.data_to_send()
    for side, peer_auth in ((daemon, agent_auth), (agent, daemon_auth)):
        side.receive_data(peer_auth)
        with pytest.raises(ProtocolError) as caught:
            side.next_event()
        assert caught.value.code is ErrorCode.AUTH_FAILED
        assert "secret" in caught.value.message
        assert not caught.value.remote
        assert side.state is State.ERROR
        # Each side tells the other why, in an Error frame (type 0x0F) that the peer can read.
        notice = side.data_to_send()
        assert notice[0] == 0x0F
        listener = Connection("agent" if side.role == "daemon" else "daemon", "control", SECRET)
        listener.receive_data(notice)
        with pytest.raises(ProtocolError) as told:
            listener.next_event()
        assert told.value.remote and told.value.code is ErrorCode.AUTH_FAILED


def test_peer_error_during_handshake_is_raised_as_remote() -> None:
    daemon = Connection("daemon", "control", SECRET)
    agent = Connection("agent", "control", SECRET)
    daemon.receive_data(agent.initiate())
    drain(daemon)
    daemon.data_to_send()  # Hello and Auth, written out
    daemon.receive_data(encode_frame(Error(ErrorCode.AUTH_FAILED, "wrong secret")))
    with pytest.raises(ProtocolError) as caught:
        daemon.next_event()
    assert caught.value.remote and caught.value.code is ErrorCode.AUTH_FAILED
    assert "wrong secret" in caught.value.message
    assert daemon.data_to_send() == b""  # no Error sent back for an Error received


def test_version_mismatch_names_both_versions() -> None:
    daemon = Connection("daemon", "control", SECRET, version=1)
    agent = Connection("agent", "control", SECRET, version=2)
    daemon.receive_data(agent.initiate())
    with pytest.raises(ProtocolError) as caught:
        daemon.next_event()
    assert caught.value.code is ErrorCode.VERSION
    assert "version 1" in caught.value.message and "version 2" in caught.value.message


def test_version_is_checked_before_the_rest_of_a_future_hello() -> None:
    """A later version may append fields to Hello; the answer must still be VERSION."""
    daemon = Connection("daemon", "control", SECRET)
    future_hello = b"HNET\x00\x07" + b"\x02\x01" + b"n" * 32 + b"new fields"
    daemon.receive_data(bytes([0x01]) + struct.pack(">I", len(future_hello)) + future_hello)
    with pytest.raises(ProtocolError) as caught:
        daemon.next_event()
    assert caught.value.code is ErrorCode.VERSION


@pytest.mark.parametrize(
    ("daemon_args", "agent_args", "words"),
    [
        (("daemon", "control"), ("daemon", "control"), "both sides claim"),
        (("daemon", "control"), ("agent", "stream"), "stream connection"),
    ],
)
def test_role_and_purpose_mismatch(
    daemon_args: tuple[str, str], agent_args: tuple[str, str], words: str
) -> None:
    a = Connection(*daemon_args, SECRET)  # type: ignore[arg-type]
    b = Connection(*agent_args, SECRET)  # type: ignore[arg-type]
    a.receive_data(b.initiate())
    with pytest.raises(ProtocolError) as caught:
        a.next_event()
    assert caught.value.code is ErrorCode.BAD_MESSAGE
    assert words in caught.value.message


def test_reflected_hello_is_refused() -> None:
    daemon = Connection("daemon", "control", SECRET)
    hello = daemon.initiate()
    # An attacker rewrites the role byte so our own Hello and nonce come back as the "agent".
    reflected = hello[:5] + hello[5:11] + b"\x02" + hello[12:]
    daemon.receive_data(reflected)
    with pytest.raises(ProtocolError) as caught:
        daemon.next_event()
    assert caught.value.code is ErrorCode.AUTH_FAILED


def test_not_a_hostnet_peer() -> None:
    daemon = Connection("daemon", "control", SECRET)
    daemon.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ProtocolError) as caught:
        daemon.next_event()
    assert caught.value.code is ErrorCode.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("purpose", "message", "state_words"),
    [
        ("control", Open("tcp", "::1", 1), "READY"),
        ("control", OpenOk(), "READY"),
        ("stream", Request(1, "ping"), "READY"),
        ("stream", OpenOk(), "READY"),
        ("control", Attach(1), "READY"),
    ],
)
def test_message_in_wrong_state_is_refused(
    purpose: Purpose, message: Open | OpenOk | Request | Attach, state_words: str
) -> None:
    daemon, agent = connected_pair(purpose)
    agent.receive_data(encode_frame(message))
    with pytest.raises(ProtocolError) as caught:
        agent.next_event()
    assert caught.value.code is ErrorCode.WRONG_STATE
    assert state_words in caught.value.message
    assert agent.state is State.ERROR
    # the peer is told
    daemon.receive_data(agent.data_to_send())
    assert drain(daemon)[0].code is ErrorCode.WRONG_STATE  # type: ignore[union-attr]


def test_second_open_and_data_before_openok_are_refused() -> None:
    daemon, agent = connected_pair("stream")
    agent.receive_data(daemon.send(Open("tcp", "::1", 1)) + encode_frame(Open("tcp", "::1", 2)))
    assert drain_until_error(agent) is ErrorCode.WRONG_STATE


def drain_until_error(conn: Connection) -> ErrorCode:
    with pytest.raises(ProtocolError) as caught:
        drain(conn)
    return caught.value.code


def test_message_before_authentication_is_refused() -> None:
    daemon = Connection("daemon", "control", SECRET)
    agent = Connection("agent", "control", SECRET)
    daemon.receive_data(agent.initiate() + encode_frame(Request(1, "poweroff")))
    assert drain_until_error(daemon) is ErrorCode.WRONG_STATE


@pytest.mark.parametrize(
    ("purpose", "ready", "limit"),
    [
        ("control", False, MAX_HANDSHAKE_PAYLOAD),
        ("control", True, MAX_CONTROL_PAYLOAD),
        ("stream", True, MAX_STREAM_SETUP_PAYLOAD),
    ],
)
def test_oversized_frame_is_refused_from_its_header(
    purpose: Purpose, ready: bool, limit: int
) -> None:
    if ready:
        _, conn = connected_pair(purpose)
    else:
        conn = Connection("agent", purpose, SECRET)
    conn.receive_data(bytes([0x13]) + struct.pack(">I", limit))  # header only: just at the limit
    assert conn.next_event() is NEED_DATA
    conn = Connection("agent", purpose, SECRET) if not ready else connected_pair(purpose)[1]
    conn.receive_data(bytes([0x13]) + struct.pack(">I", limit + 1))
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()
    assert caught.value.code is ErrorCode.LIMIT
    assert str(limit) in caught.value.message


def test_largest_messages_pass_through_a_control_connection() -> None:
    from proxy.wire.limits import MAX_JSON_BYTES

    daemon, agent = connected_pair("control")
    largest = Response(1, True, "x" * (MAX_JSON_BYTES - 2))
    listeners = Listeners(
        tuple(Listener("udp", "ffff::1%abcdefghijklmnop", p) for p in range(1, 4097))
    )
    agent.receive_data(daemon.send(largest) + daemon.send(listeners))
    assert drain(agent) == [largest, listeners]


def test_send_in_wrong_state_is_refused_locally() -> None:
    daemon, _ = connected_pair("stream")
    with pytest.raises(ProtocolError) as caught:
        daemon.send(Listeners())
    assert caught.value.local and caught.value.code is ErrorCode.WRONG_STATE
    assert daemon.state is State.READY
    daemon.send(Open("tcp", "::1", 1))
    with pytest.raises(ProtocolError):
        daemon.send(OpenOk())  # only the side that received the Open may answer
    assert daemon.state is State.OPENING


def test_after_an_error_the_connection_stays_failed() -> None:
    daemon = Connection("daemon", "control", SECRET)
    daemon.receive_data(b"\xff\0\0\0\0")
    for call in (
        daemon.next_event,
        lambda: daemon.receive_data(b"x"),
        lambda: daemon.send(Request(1, "ping")),
    ):
        with pytest.raises(ProtocolError) as caught:
            call()
        assert caught.value.code is ErrorCode.UNKNOWN_TYPE
        assert daemon.state is State.ERROR


@pytest.mark.parametrize("purpose", ["control", "stream"])
def test_local_misuse_does_not_change_state(purpose: Purpose) -> None:
    daemon = Connection("daemon", purpose, SECRET)
    with pytest.raises(ProtocolError) as caught:
        daemon.send(Request(1, "ping"))
    assert caught.value.local and caught.value.code is ErrorCode.WRONG_STATE
    assert daemon.state is State.HELLO
    with pytest.raises(ProtocolError):
        daemon.take_trailing_data()


def test_end_of_input_during_handshake_or_mid_frame() -> None:
    daemon = Connection("daemon", "control", SECRET)
    daemon.receive_data(b"")
    with pytest.raises(ProtocolError) as caught:
        daemon.next_event()
    assert caught.value.code is ErrorCode.PEER_CLOSED and "handshake" in caught.value.message

    _, agent = connected_pair("control")
    agent.receive_data(encode_frame(Request(1, "ping"))[:-1])
    assert agent.next_event() is NEED_DATA
    agent.receive_data(b"")
    with pytest.raises(ProtocolError) as caught:
        agent.next_event()
    assert (
        caught.value.code is ErrorCode.PEER_CLOSED and "middle of a frame" in caught.value.message
    )


def test_constructor_checks() -> None:
    with pytest.raises(ProtocolError, match="at least 16 bytes"):
        Connection("daemon", "control", b"short")
    with pytest.raises(ProtocolError, match="role"):
        Connection("host", "control", SECRET)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="nonce"):
        Connection("daemon", "control", SECRET, nonce=b"x")
    a = Connection("daemon", "control", SECRET)
    b = Connection("daemon", "control", SECRET)
    assert a.nonce != b.nonce and len(a.nonce) == 32
