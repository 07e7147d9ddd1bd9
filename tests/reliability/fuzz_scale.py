"""Fuzzing the wire protocol and the multiplexer at scale: a plain loop, tens of thousands of
inputs a second, where hypothesis manages a few hundred.

Each input is made by one ``random.Random(seed)``: random bytes, a valid recorded session
with random bytes after a random prefix, a session with random edits (set, flip, delete,
insert, cut), or well-framed frames with random types, ids and payloads (so decoders and
state machines are reached, not only the framing). Every input is fed in random cuts, with
or without an end of input, and for the multiplexer interleaved with the local calls an
adapter makes (open, send, end, reset, acknowledge, partial pulls).

What must hold for every input: the only exception is ProtocolError (wire) or MuxError
(mux); once failed, the object stays failed; the number of events is bounded by the input
size; the receive buffer is bounded by one frame after the events are drained; and no input
takes more than ``HANG_SECONDS`` (a SIGALRM watchdog interrupts a loop that would hang).
A failure names the seed, the input's index and its bytes, so it can be replayed.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType as PyFrame

from proxy.mux import (
    Data,
    Multiplexer,
    MuxError,
    MuxProtocolError,
    MuxState,
    StreamOpened,
)
from proxy.mux.frames import (
    FRAME_HEADER,
    MAX_HEADER_BYTES,
    PAYLOAD_SIZE,
    FrameType,
    frame,
    u32,
)
from proxy.wire import (
    NEED_DATA,
    PAUSED,
    Connection,
    ErrorCode,
    Listener,
    Listeners,
    Open,
    ProtocolError,
    Request,
    Response,
    State,
    StreamFailed,
    StreamRequest,
)
from proxy.wire.limits import FRAME_HEADER_BYTES, MAX_CONTROL_PAYLOAD

SECRET = b"s" * 32
DAEMON_NONCE = b"d" * 32
AGENT_NONCE = b"a" * 32
HANG_SECONDS = 2.0
MUX_WINDOW = 16 * 1024  # the smallest window: fuzzed sessions reach flow control quickly


class Hang(Exception):
    """An input ran longer than HANG_SECONDS."""


@dataclass
class FuzzStats:
    """What a run did: inputs, how they ended, the slowest one."""

    target: str
    inputs: int = 0
    errors: int = 0  # inputs that ended in the target's own error (the expected refusals)
    events: int = 0
    outcomes: set[str] = field(default_factory=set)  # distinct error codes and final states
    slowest: float = 0.0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


class FuzzFailure(AssertionError):
    def __init__(self, target: str, seed: int, index: int, data: bytes, problem: str) -> None:
        super().__init__(
            f"{target} fuzz input {index} (seed {seed}): {problem}; input ({len(data)} bytes): "
            f"{data[:2048].hex()}"
        )


# -- inputs ---------------------------------------------------------------------------------


def split(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` in 1..8 random pieces (never an empty piece: b"" means end of input)."""
    if len(data) < 2 or rng.random() < 0.3:
        return [data] if data else []
    cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randrange(1, 8))})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 7)):
        if not out:
            break
        at = rng.randrange(len(out))
        kind = rng.randrange(6)
        if kind == 0:
            out[at] = rng.randrange(256)
        elif kind == 1:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 2:
            del out[at : at + rng.randrange(1, 10)]
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randrange(1, 10))
        elif kind == 4:
            out[at:at] = bytes([rng.choice((0, 0xFF, 0x7F, 0x80))]) * rng.randrange(1, 6)
        else:
            del out[at:]
    return bytes(out)


# -- the wire protocol ------------------------------------------------------------------------


def _handshake_bytes(purpose: str) -> tuple[bytes, Connection]:
    """The daemon's side of a completed handshake, as the agent would receive it."""
    daemon = Connection("daemon", purpose, SECRET, nonce=DAEMON_NONCE)  # type: ignore[arg-type]
    agent = Connection("agent", purpose, SECRET, nonce=AGENT_NONCE)  # type: ignore[arg-type]
    sent = daemon.initiate()
    agent.receive_data(sent)
    daemon.receive_data(agent.initiate())
    for _ in range(3):
        for side in (daemon, agent):
            while side.next_event() not in (NEED_DATA, PAUSED):
                pass
        out = daemon.data_to_send()
        sent += out
        if out:
            agent.receive_data(out)
        back = agent.data_to_send()
        if back:
            daemon.receive_data(back)
    assert daemon.state is State.READY, daemon.state
    return sent, daemon


def _sessions() -> dict[str, bytes]:
    control, daemon = _handshake_bytes("control")
    for message in (
        Listeners((Listener("tcp", "0.0.0.0", 80), Listener("udp", "fe80::1%eth0", 53)), ()),
        Request(1, "exec", {"argv": ["true"], "tty": False, "n": [1, 2.5, None]}),
        Response(2, True, {"ok": "yes"}),
        StreamRequest(3, "tcp", "127.0.0.1", 5432),
        StreamFailed(3, ErrorCode.REFUSED, "refused"),
        Listeners((), (Listener("tcp", "::", 8080),)),
    ):
        control += daemon.send(message)
    stream, daemon = _handshake_bytes("stream")
    stream += daemon.send(Open("tcp", "::1", 8080))
    return {"control": control, "stream": stream}


WIRE_SESSIONS = _sessions()
WIRE_HANDSHAKES = {purpose: _handshake_bytes(purpose)[0] for purpose in ("control", "stream")}


def wire_frames(rng: random.Random) -> bytes:
    """Well-framed frames of random (mostly known) types with random payloads."""
    out = bytearray()
    for _ in range(rng.randrange(1, 6)):
        kind = rng.randrange(16) if rng.random() < 0.9 else rng.randrange(256)
        size = rng.choice((0, 1, 2, 4, 8, 33, rng.randrange(300)))
        out += bytes([kind]) + size.to_bytes(4, "big") + rng.randbytes(size)
    return bytes(out)


def wire_input(rng: random.Random) -> tuple[str, str, bytes, bool]:
    """(role, purpose, bytes, end of input) for one wire input."""
    purpose = rng.choice(("control", "stream"))
    kind = rng.randrange(5)
    eof = rng.random() < 0.5
    if kind == 0:
        return rng.choice(("daemon", "agent")), purpose, rng.randbytes(rng.randrange(600)), eof
    session = WIRE_SESSIONS[purpose]
    if kind == 1:
        cut = rng.randrange(len(session) + 1)
        return "agent", purpose, session[:cut] + rng.randbytes(rng.randrange(300)), eof
    if kind == 2:
        return "agent", purpose, mutate(rng, session), eof
    # after a valid handshake: well-framed garbage, alone or mutated
    tail = wire_frames(rng)
    if kind == 4:
        tail = mutate(rng, tail)
    return "agent", purpose, WIRE_HANDSHAKES[purpose] + tail, eof


def feed_wire(role: str, purpose: str, chunks: list[bytes], eof: bool, stats: FuzzStats) -> str:
    """Feed one input; returns its outcome. Raises AssertionError on a broken invariant."""
    nonce = AGENT_NONCE if role == "agent" else DAEMON_NONCE
    conn = Connection(role, purpose, SECRET, nonce=nonce)  # type: ignore[arg-type]
    budget = sum(len(c) for c in chunks) // FRAME_HEADER_BYTES + 3
    events = 0
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            conn.receive_data(chunk)
            while conn.next_event() not in (NEED_DATA, PAUSED):
                events += 1
                if events > budget:
                    raise AssertionError(f"{events} events from {budget * 5} bytes")
            if len(conn._in) > FRAME_HEADER_BYTES + MAX_CONTROL_PAYLOAD:
                raise AssertionError(f"{len(conn._in)} bytes buffered after draining")
            conn.data_to_send()
    except ProtocolError as exc:
        stats.events += events
        if not exc.local and conn.state is not State.ERROR:
            raise AssertionError(f"a ProtocolError left the state {conn.state.name}") from exc
        if conn.state is State.ERROR:
            try:
                conn.next_event()
            except ProtocolError:
                pass
            else:
                raise AssertionError("a failed connection produced an event again") from None
        stats.errors += 1
        return f"wire error {exc.code.name} in {purpose}"
    stats.events += events
    return f"wire state {conn.state.name} in {purpose}"


def fuzz_wire(count: int, seed: int) -> FuzzStats:
    stats = FuzzStats("wire protocol")

    def one(rng: random.Random) -> tuple[bytes, Callable[[], str]]:
        role, purpose, data, eof = wire_input(rng)
        chunks = split(rng, data)
        return data, lambda: feed_wire(role, purpose, chunks, eof, stats)

    return _run(stats, count, seed, one, ProtocolError)


# -- the multiplexer --------------------------------------------------------------------------


def _mux_session() -> bytes:
    daemon = Multiplexer("daemon", initial_window=MUX_WINDOW)
    agent = Multiplexer("agent", initial_window=MUX_WINDOW)
    daemon.receive_data(agent.data_to_send())
    a = daemon.open_stream(b"tcp ::1 80")
    b = daemon.open_stream(b"udp 127.0.0.1 53")
    daemon.send_data(a, b"GET / HTTP/1.1\r\n\r\n" * 40)
    daemon.send_data(b, b"\0\4ping")
    daemon.ping(b"pingpong")
    stream = daemon.data_to_send()
    daemon.end_stream(a)
    daemon.reset_stream(b, 300)
    stream += daemon.data_to_send()
    stream += frame(FrameType.WINDOW, 2, u32(100))  # the agent opens stream 2 first
    return stream


MUX_SESSION = _mux_session()
MUX_SETTINGS = MUX_SESSION[: FRAME_HEADER.size + PAYLOAD_SIZE[FrameType.SETTINGS][0]]


def mux_frames(rng: random.Random) -> bytes:
    """Well-framed frames: known types, small stream ids, sizes inside (or at) the bounds."""
    out = bytearray()
    for _ in range(rng.randrange(1, 10)):
        kind = FrameType(rng.randrange(9))
        low, high = PAYLOAD_SIZE[kind]
        size = rng.choice((low, high, rng.randint(low, min(high, 64))))
        if rng.random() < 0.05:
            size += rng.choice((-1, 1))
        stream_id = 0 if kind in (0, 6, 7, 8) and rng.random() < 0.9 else rng.randrange(8)
        if kind in (FrameType.WINDOW, FrameType.RESET, FrameType.GOAWAY):
            payload = rng.choice((u32(0), u32(1), u32(rng.randrange(2**32)), u32(2**31 - 1)))
            payload = (payload * 2)[: max(size, 0)]
        else:
            payload = rng.randbytes(max(size, 0))
        out += FRAME_HEADER.pack(kind, stream_id, max(size, 0)) + payload
    return bytes(out)


def mux_input(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(600))
    if kind == 1:
        cut = rng.randrange(len(MUX_SESSION) + 1)
        return MUX_SESSION[:cut] + rng.randbytes(rng.randrange(300))
    if kind == 2:
        return mutate(rng, MUX_SESSION)
    tail = mux_frames(rng)
    return MUX_SETTINGS + (mutate(rng, tail) if kind == 4 else tail)


def local_action(rng: random.Random, mux: Multiplexer, unacked: dict[int, int]) -> None:
    """One call an adapter would make; MuxError is the only refusal allowed."""
    streams = mux.stream_ids
    action = rng.randrange(7)
    if action == 0:
        mux.open_stream(rng.randbytes(rng.randrange(8)))
    elif action == 1 and streams:
        mux.send_data(rng.choice(streams), rng.randbytes(rng.randrange(1, 3000)))
    elif action == 2 and streams:
        mux.end_stream(rng.choice(streams))
    elif action == 3 and streams:
        mux.reset_stream(rng.choice(streams), rng.randrange(10))
    elif action == 4 and unacked:
        stream_id = rng.choice(list(unacked))
        size = unacked.pop(stream_id)
        mux.acknowledge(stream_id, size)
    elif action == 5:
        mux.ping()
    else:
        mux.data_to_send(rng.choice((1, 100, 20000, 65536)))


def feed_mux(rng: random.Random, chunks: list[bytes], eof: bool, stats: FuzzStats) -> str:
    mux = Multiplexer("agent", initial_window=MUX_WINDOW, max_streams=16)
    unacked: dict[int, int] = {}
    mux.open_stream()  # stream 2, so the recorded WINDOW frame is for a stream that exists
    budget = sum(len(c) for c in chunks) // FRAME_HEADER.size + 64
    events = 0
    try:
        for chunk in chunks:
            for event in mux.receive_data(chunk):
                events += 1
                if isinstance(event, Data):
                    unacked[event.stream_id] = unacked.get(event.stream_id, 0) + len(event.data)
                elif isinstance(event, StreamOpened) and len(event.header) > MAX_HEADER_BYTES:
                    raise AssertionError(f"an OPEN header of {len(event.header)} bytes")
            if events > budget:
                raise AssertionError(f"{events} events from {budget * 9} bytes")
            if len(mux._in) >= FRAME_HEADER.size + 16 * 1024:
                raise AssertionError(f"{len(mux._in)} bytes buffered after a receive")
            if rng.random() < 0.5:
                try:
                    local_action(rng, mux, unacked)
                except MuxProtocolError:
                    raise
                except MuxError:
                    pass  # a refused local call (closed stream, a limit): the caller's problem
            mux.data_to_send()
        if eof:
            events += len(mux.receive_data(b""))
            if mux.state is not MuxState.CLOSED:
                raise AssertionError(f"end of input left the state {mux.state.name}")
    except MuxProtocolError as exc:
        stats.events += events
        if mux.state is not MuxState.ERROR:
            raise AssertionError(f"a MuxProtocolError left the state {mux.state.name}") from exc
        try:
            mux.receive_data(b"x")
        except MuxProtocolError:
            pass
        else:
            raise AssertionError("a failed multiplexer accepted data again") from None
        stats.errors += 1
        return f"mux error {exc.code.name}"
    stats.events += events
    return f"mux state {mux.state.name}"


def fuzz_mux(count: int, seed: int) -> FuzzStats:
    stats = FuzzStats("multiplexer")

    def one(rng: random.Random) -> tuple[bytes, Callable[[], str]]:
        data = mux_input(rng)
        chunks = split(rng, data)
        eof = rng.random() < 0.3
        return data, lambda: feed_mux(rng, chunks, eof, stats)

    return _run(stats, count, seed, one, MuxError)


# -- the loop ---------------------------------------------------------------------------------


def _on_alarm(_signum: int, _frame: PyFrame | None) -> None:
    raise Hang(f"an input ran longer than {HANG_SECONDS} s")


def _run(
    stats: FuzzStats,
    count: int,
    seed: int,
    make: Callable[[random.Random], tuple[bytes, Callable[[], str]]],
    allowed: type[Exception],
) -> FuzzStats:
    rng = random.Random(seed)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.perf_counter()
    try:
        for index in range(count):
            data, feed = make(rng)
            began = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                stats.outcomes.add(feed())
            except Hang as exc:
                raise FuzzFailure(stats.target, seed, index, data, str(exc)) from None
            except allowed as exc:  # only ever escapes from a broken invariant: report it
                raise FuzzFailure(stats.target, seed, index, data, f"escaped: {exc!r}") from exc
            except AssertionError as exc:
                raise FuzzFailure(stats.target, seed, index, data, str(exc)) from exc
            except Exception as exc:
                raise FuzzFailure(
                    stats.target, seed, index, data, f"raised {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            stats.slowest = max(stats.slowest, time.perf_counter() - began)
            stats.inputs += 1
    finally:
        signal.signal(signal.SIGALRM, previous)
        stats.seconds = time.perf_counter() - start
    return stats


TARGETS: dict[str, Callable[[int, int], FuzzStats]] = {"wire": fuzz_wire, "mux": fuzz_mux}


def _one_share(target: str, count: int, seed: int) -> FuzzStats:
    return TARGETS[target](count, seed)


def fuzz_parallel(target: str, count: int, seed: int, workers: int | None = None) -> FuzzStats:
    """``count`` inputs of ``target`` split over ``workers`` processes (seeds seed, seed+1...)."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or count < 10_000:
        return TARGETS[target](count, seed)
    shares = [count // workers + (1 if k < count % workers else 0) for k in range(workers)]
    start = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        parts = list(pool.map(_one_share, [target] * workers, shares, range(seed, seed + workers)))
    total = FuzzStats(parts[0].target)
    for part in parts:
        total.inputs += part.inputs
        total.errors += part.errors
        total.events += part.events
        total.outcomes |= part.outcomes
        total.slowest = max(total.slowest, part.slowest)
    total.seconds = time.perf_counter() - start
    return total


def describe(stats: FuzzStats) -> str:
    return (
        f"{stats.rate:,.0f} inputs/s; {stats.errors:,} refused with the expected error, "
        f"{stats.events:,} events; {len(stats.outcomes)} distinct outcomes; "
        f"slowest input {stats.slowest * 1e3:.1f} ms"
    )
