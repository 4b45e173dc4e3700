"""One SMPP connection, either side: framing, sequence numbers, the window and response matching.

It is an asyncio.Protocol rather than a stream reader so that a burst of PDUs in one TCP segment is
split in one pass without a task switch per PDU, and so that many requests can be outstanding at once
(the window) with each caller awaiting only its own response.

Requests from the peer go to `on_request(session, command, sequence, frame)`, called synchronously;
the handler answers with `send()` when it is ready (our ESME answers deliver_sm only after the engine
has stored it). Responses resolve the future of the request with the same sequence number and the
matching response command (or generic_nack, which answers any request and always means it failed);
a response with another command id is logged and resolves nothing, so a confused peer cannot hand one
request's answer to another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from omnirelay.channels.smpp import pdu

log = logging.getLogger(__name__)

RequestHandler = Callable[["SmppSession", int, int, bytes], None]


class LinkLost(ConnectionError):
    """The connection closed (or was never open) while a request was outstanding."""


class SmppSession(asyncio.Protocol):
    def __init__(self, on_request: RequestHandler, *, window: int = 10, name: str = "smpp") -> None:
        self.name = name
        self._on_request = on_request
        self._window = asyncio.Semaphore(max(1, window))
        # sequence -> (the response command expected, its waiter)
        self._pending: dict[int, tuple[int, asyncio.Future[tuple[int, bytes]]]] = {}
        self._buffer = bytearray()
        self._sequence = 0
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pdus_received = 0
        self.submits_received = 0  # counted by the simulator
        self.unbound = False  # the peer sent unbind (the simulator counts clean ends)
        self.dropped = False  # the simulator dropped this link on purpose
        # Set by the owner once bound; informational (the simulator reads it).
        self.system_id = ""
        self.bind_command: int | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= pdu.HEADER_SIZE:
            length = int.from_bytes(buffer[:4], "big")
            if length < pdu.HEADER_SIZE or length > pdu.MAX_PDU_SIZE:
                log.warning("%s: invalid command_length %d; closing", self.name, length)
                self.close()
                return
            if len(buffer) < length:
                return
            data_frame = bytes(buffer[:length])
            del buffer[:length]
            self.pdus_received += 1
            _, command, status, sequence = pdu.header(data_frame)
            if command & pdu.RESPONSE_BIT:
                self._resolve(command, status, sequence, data_frame)
                continue
            self._on_request(self, command, sequence, data_frame)
            if not self.is_open:  # the handler closed the link
                return

    def _resolve(self, command: int, status: int, sequence: int, data_frame: bytes) -> None:
        pending = self._pending.get(sequence)
        if pending is None:
            if command == pdu.Command.GENERIC_NACK:
                log.warning("%s: generic_nack %s for seq %d", self.name, pdu.status_name(status),
                            sequence)
            return
        expected, waiter = pending
        if command == pdu.Command.GENERIC_NACK:
            # A generic_nack is never a success, even when a peer leaves its status 0.
            status = status or pdu.Status.RUNKNOWNERR
            log.warning("%s: generic_nack %s answers seq %d", self.name, pdu.status_name(status),
                        sequence)
        elif command != expected:
            log.warning("%s: response 0x%08X to seq %d, which awaits 0x%08X; ignored", self.name,
                        command, sequence, expected)
            return
        del self._pending[sequence]
        if not waiter.done():
            waiter.set_result((status, data_frame))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        error = LinkLost(f"{self.name}: connection lost" + (f": {exc}" if exc else ""))
        pending, self._pending = self._pending, {}
        for _, waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    # --- sending -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise LinkLost(f"{self.name}: not connected")
        self._transport.write(data)

    async def request(self, build: Callable[[int], bytes], within: float, *,
                      windowed: bool = True) -> tuple[int, bytes]:
        """Send the PDU `build(sequence)` within the window and return (command_status, response frame).

        Raises TimeoutError when no response came in time (the PDU may or may not have been acted
        upon: the caller must not resend it blindly) and LinkLost when the link is or goes down.
        `windowed=False` is for enquire_link and bind, which must not queue behind a full window."""
        if not windowed:
            return await self._exchange(build, within)
        async with self._window:
            return await self._exchange(build, within)

    async def _exchange(self, build: Callable[[int], bytes], within: float) -> tuple[int, bytes]:
        sequence, waiter = self.start_request(build)
        try:
            return await asyncio.wait_for(waiter, within)
        finally:
            self._pending.pop(sequence, None)

    def start_request(self, build: Callable[[int], bytes]
                      ) -> tuple[int, asyncio.Future[tuple[int, bytes]]]:
        """Send the PDU `build(sequence)` now, outside any window, and return its sequence and the
        future its (command_status, response frame) will resolve; it fails with LinkLost when the
        link goes down. No timeout: the caller bounds the wait and calls `give_up(sequence)`."""
        if not self.is_open:
            raise LinkLost(f"{self.name}: not connected")
        sequence = self.next_sequence()
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        data = build(sequence)
        self._pending[sequence] = (int.from_bytes(data[4:8], "big") | pdu.RESPONSE_BIT, waiter)
        try:
            self.send(data)
        except BaseException:
            del self._pending[sequence]
            raise
        return sequence, waiter

    def give_up(self, sequence: int) -> None:
        """No response came in time: a late one will match nothing, and the waiter fails with
        TimeoutError (the PDU may or may not have been acted upon)."""
        pending = self._pending.pop(sequence, None)
        if pending is not None and not pending[1].done():
            pending[1].set_exception(TimeoutError())

    def respond(self, command: int, sequence: int, body: bytes = b"", status: int = 0) -> None:
        """Answer a request, quietly doing nothing when the link has gone (the peer will resend)."""
        if self.is_open:
            self.send(pdu.frame(command, sequence, body, status))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the TCP connection without an unbind, as a failing network would."""
        if self._transport is not None:
            self._transport.abort()
