"""Reading one control connection, the same loop for the daemon and the agent.

Every control message goes to the side's handler; answers to our own requests resolve
their waiting callers (with the socket handed along, where one was asked for). An Error
from the other side ends the connection, raised as the ProtocolError it reports.
"""

from __future__ import annotations

from typing import Protocol

from proxy.wire import (
    Error,
    Listeners,
    ProtocolError,
    Request,
    Response,
    StreamFailed,
    StreamRequest,
)
from vm.transport.control_requests import RequestTracker
from vm.transport.wire_socket import WireSocket


class ControlHandler(Protocol):
    async def on_listeners(self, change: Listeners) -> None: ...

    def on_request(self, wire: WireSocket, request: Request) -> None: ...

    def on_stream_request(self, request: StreamRequest) -> None: ...

    def on_stream_failed(self, failure: StreamFailed) -> None: ...


async def serve_control(
    wire: WireSocket, handler: ControlHandler, requests: RequestTracker
) -> None:
    """Dispatch ``wire``'s messages until it ends (ProtocolError or OSError)."""
    while True:
        event = await wire.next_event()
        if isinstance(event, Listeners):
            await handler.on_listeners(event)
        elif isinstance(event, Request):
            handler.on_request(wire, event)
        elif isinstance(event, Response):
            handed = wire.take_fd() if requests.expects_socket(event) else None
            requests.resolve(event, handed)
        elif isinstance(event, StreamRequest):
            handler.on_stream_request(event)
        elif isinstance(event, StreamFailed):
            handler.on_stream_failed(event)
        elif isinstance(event, Error):
            raise ProtocolError(event.code, event.message, remote=True)
