"""An SMSC for tests whose PDUs are decoded and encoded by smpplib's classes, not by omnirelay's
pdu.py or smpp34, so that the gateway and its peer cannot share a codec's mistake.

It runs on its own event loop in a thread, accepts any bind, answers submit_sm with ids of its own
and sends a delivery receipt for each accepted part after `receipt_delay`. Destinations ending in a
key of `misbehave` get that behaviour instead:

    "nack-ok"        a generic_nack with command_status 0 (seen from broken SMSCs) answers the submit
    "wrong-command"  a data_sm_resp with the submit's sequence number comes first, then the real
                     submit_sm_resp and its receipt
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from smpplib import consts, smpp  # type: ignore[import-untyped]


class _Sequence:
    """What smpplib's PDUs ask their client for: sequence numbers."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


@dataclass(frozen=True)
class PeerSubmission:
    message_id: str
    destination_addr: str
    data_coding: int
    esm_class: int
    short_message: bytes


@dataclass
class PeerStats:
    binds: int = 0
    unbinds: int = 0
    receipts_sent: int = 0
    receipts_acknowledged: int = 0
    submissions: list[PeerSubmission] = field(default_factory=list)


class SmpplibSmsc:
    def __init__(self, *, receipt_delay: float = 0.05, misbehave: dict[str, str] | None = None) -> None:
        self.receipt_delay = receipt_delay
        self.misbehave = dict(misbehave or {})
        self.stats = PeerStats()
        self.port = 0
        self._next_id = 0x5A000
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> SmpplibSmsc:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sequences = _Sequence()

        def write(pdu: Any) -> None:
            if not writer.is_closing():
                writer.write(pdu.generate())

        def answer(request: Any, command: str, **fields: Any) -> None:
            response = smpp.make_pdu(command, client=sequences, **fields)
            response.sequence = request.sequence
            write(response)

        try:
            while True:
                head = await reader.readexactly(4)
                raw = head + await reader.readexactly(int.from_bytes(head, "big") - 4)
                request = smpp.parse_pdu(raw, client=sequences)
                command = request.command
                if command in ("bind_transmitter", "bind_receiver", "bind_transceiver"):
                    self.stats.binds += 1
                    answer(request, command + "_resp", system_id="SMPPLIBSC")
                elif command == "submit_sm":
                    self._on_submit(request, answer, write, sequences)
                elif command == "deliver_sm_resp":
                    self.stats.receipts_acknowledged += request.status == consts.SMPP_ESME_ROK
                elif command == "enquire_link":
                    answer(request, "enquire_link_resp")
                elif command == "unbind":
                    self.stats.unbinds += 1
                    answer(request, "unbind_resp")
                    await writer.drain()
                    break
                else:
                    answer(request, "generic_nack", status=consts.SMPP_ESME_RINVCMDID)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _on_submit(self, request: Any, answer: Any, write: Any, sequences: _Sequence) -> None:
        destination = request.destination_addr.decode()
        behaviour = next((b for suffix, b in self.misbehave.items() if destination.endswith(suffix)),
                         None)
        if behaviour == "nack-ok":
            answer(request, "generic_nack", status=consts.SMPP_ESME_ROK)
            return
        if behaviour == "wrong-command":
            answer(request, "data_sm_resp", message_id="NOTYOURS")
        self._next_id += 1
        message_id = f"{self._next_id:X}"
        self.stats.submissions.append(PeerSubmission(
            message_id, destination, request.data_coding, request.esm_class,
            bytes(request.short_message or b"")))
        answer(request, "submit_sm_resp", message_id=message_id)
        if request.registered_delivery & 0x01:
            receipt = smpp.make_pdu(
                "deliver_sm", client=sequences, source_addr=destination,
                source_addr_ton=request.dest_addr_ton, destination_addr=request.source_addr.decode(),
                esm_class=consts.SMPP_MSGMODE_DEFAULT | 0x04, receipted_message_id=message_id,
                message_state=consts.SMPP_MESSAGE_STATE_DELIVERED,
                short_message=(f"id:{message_id} sub:001 dlvrd:001 submit date:2501011200 done "
                               "date:2501011200 stat:DELIVRD err:000 text:").encode())

            def send_receipt() -> None:
                self.stats.receipts_sent += 1
                write(receipt)

            self._loop.call_later(self.receipt_delay, send_receipt)
