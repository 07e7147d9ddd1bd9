"""Frames that break the multiplexer protocol raise MuxProtocolError with a specific code."""

from __future__ import annotations

import pytest

from proxy.mux import Data, Multiplexer, MuxErrorCode, MuxProtocolError, MuxState, StreamOpened
from proxy.mux.frames import MUX_MAGIC, FrameType, frame, u32

SETTINGS = frame(FrameType.SETTINGS, 0, MUX_MAGIC + b"\0\1" + u32(256 * 1024))


def agent_with(*frames: bytes) -> tuple[Multiplexer, list[object]]:
    agent = Multiplexer("agent")
    events = agent.receive_data(SETTINGS + b"".join(frames))
    return agent, list(events)


@pytest.mark.parametrize(
    ("frames", "code", "words"),
    [
        ([frame(FrameType.OPEN, 1)], MuxErrorCode.PROTOCOL, "before the peer's SETTINGS"),
        ([SETTINGS[:9] + b"XMUX" + SETTINGS[13:]], MuxErrorCode.PROTOCOL, "HMUX"),
        (
            [frame(FrameType.SETTINGS, 0, MUX_MAGIC + b"\0\2" + u32(65536))],
            MuxErrorCode.VERSION,
            "version 2",
        ),
        (
            [frame(FrameType.SETTINGS, 0, MUX_MAGIC + b"\0\1" + u32(100))],
            MuxErrorCode.FLOW_CONTROL,
            "window",
        ),
        ([b"\x09" + b"\0" * 8], MuxErrorCode.PROTOCOL, "unknown frame type 0x09"),
    ],
)
def test_bad_first_frame(frames: list[bytes], code: MuxErrorCode, words: str) -> None:
    agent = Multiplexer("agent")
    with pytest.raises(MuxProtocolError) as caught:
        agent.receive_data(b"".join(frames))
    assert caught.value.code is code
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("frames", "code", "words"),
    [
        ([SETTINGS], MuxErrorCode.PROTOCOL, "second SETTINGS"),
        ([frame(FrameType.OPEN, 2)], MuxErrorCode.PROTOCOL, "an id of ours"),
        ([frame(FrameType.OPEN, 3), frame(FrameType.OPEN, 1)], MuxErrorCode.PROTOCOL, "must grow"),
        ([frame(FrameType.OPEN, 0)], MuxErrorCode.PROTOCOL, "0 is the connection"),
        ([frame(FrameType.PING, 1, b"12345678")], MuxErrorCode.PROTOCOL, "must be 0"),
        ([frame(FrameType.DATA, 5, b"x")], MuxErrorCode.PROTOCOL, "never opened"),
        ([frame(FrameType.WINDOW, 4, u32(1))], MuxErrorCode.PROTOCOL, "never opened"),
        ([frame(FrameType.OPEN, 1), frame(FrameType.DATA, 1)], MuxErrorCode.FRAME_SIZE, "DATA"),
        ([b"\x02\0\0\0\1\0\0\x40\x01"], MuxErrorCode.FRAME_SIZE, "16384"),
        ([frame(FrameType.OPEN, 1, b"h" * 4097)], MuxErrorCode.FRAME_SIZE, "OPEN"),
        ([frame(FrameType.RESET, 1, b"\0")], MuxErrorCode.FRAME_SIZE, "RESET"),
        ([frame(FrameType.PING, 0, b"1234567")], MuxErrorCode.FRAME_SIZE, "PING"),
        (
            [frame(FrameType.OPEN, 1), frame(FrameType.END, 1), frame(FrameType.DATA, 1, b"x")],
            MuxErrorCode.PROTOCOL,
            "after its END",
        ),
        (
            [frame(FrameType.OPEN, 1), frame(FrameType.END, 1), frame(FrameType.END, 1)],
            MuxErrorCode.PROTOCOL,
            "second END",
        ),
        (
            [frame(FrameType.OPEN, 1), frame(FrameType.WINDOW, 1, u32(0))],
            MuxErrorCode.FLOW_CONTROL,
            "zero",
        ),
        (
            [frame(FrameType.OPEN, 1), frame(FrameType.WINDOW, 1, u32(2**31 - 1))],
            MuxErrorCode.FLOW_CONTROL,
            "overflows",
        ),
    ],
)
def test_protocol_violations(frames: list[bytes], code: MuxErrorCode, words: str) -> None:
    agent = Multiplexer("agent")
    agent.data_to_send()
    with pytest.raises(MuxProtocolError) as caught:
        agent.receive_data(SETTINGS + b"".join(frames))
    assert caught.value.code is code
    assert words in caught.value.message
    assert agent.state is MuxState.ERROR
    goaway = agent.data_to_send()  # tells the peer why
    assert goaway[0] == FrameType.GOAWAY and goaway[-4:] == u32(code)
    with pytest.raises(MuxProtocolError):
        agent.receive_data(b"x")
    with pytest.raises(MuxProtocolError):
        agent.open_stream()


def test_data_beyond_the_window_is_a_flow_control_error() -> None:
    chunks = [frame(FrameType.DATA, 1, b"d" * 16384) for _ in range(16)]
    agent, events = agent_with(frame(FrameType.OPEN, 1), *chunks)  # exactly 256 KiB: fine
    assert sum(len(e.data) for e in events if isinstance(e, Data)) == 256 * 1024
    with pytest.raises(MuxProtocolError) as caught:
        agent.receive_data(frame(FrameType.DATA, 1, b"!"))
    assert caught.value.code is MuxErrorCode.FLOW_CONTROL
    assert "credit" in caught.value.message


def test_events_before_an_error_are_kept_on_the_exception() -> None:
    agent = Multiplexer("agent")
    with pytest.raises(MuxProtocolError) as caught:
        agent.receive_data(SETTINGS + frame(FrameType.OPEN, 1, b"h") + b"\xff" + b"\0" * 8)
    assert caught.value.events == [StreamOpened(1, b"h")]


def test_ping_flood_without_reading_answers_is_refused() -> None:
    agent = Multiplexer("agent")
    agent.receive_data(SETTINGS)
    ping = frame(FrameType.PING, 0, b"12345678")
    agent.receive_data(ping * 4000)
    agent.data_to_send()  # the answers went out: the count starts again
    agent.receive_data(ping * 4000)
    with pytest.raises(MuxProtocolError) as caught:
        agent.receive_data(ping * 100)
    assert "faster than they could be answered" in caught.value.message


def test_refused_open_flood_is_refused() -> None:
    agent = Multiplexer("agent", max_streams=1)
    agent.receive_data(SETTINGS)
    opens = b"".join(frame(FrameType.OPEN, 2 * i + 1) for i in range(5000))
    with pytest.raises(MuxProtocolError) as caught:
        agent.receive_data(opens)
    assert caught.value.code is MuxErrorCode.PROTOCOL
    assert len(caught.value.events) == 1  # the first OPEN was accepted
