"""A simulated SMSC: accepts ESME binds, answers submit_sm, sends delivery receipts, injects inbound SMS.

It speaks through the same session layer and codec as our channel (`channels.smpp.session/pdu`, on
smpp34's codec), so it is a faithful peer for tests and a useful local SMSC for development. What it
does to each message follows `rules` (see `omnirelay.smsc.rules`); on top of that it can refuse a
fraction of submits or everything above a rate with ESME_RTHROTTLED, a fraction with ESME_RMSGQFUL,
and drop every connection at its Nth submit_sm or on command.

Receipts go to a receiver or transceiver bind of the submitting system_id (the submitting bind when it
can receive), after `receipt_delay` seconds. When no such bind is up, or the ESME does not acknowledge
one, the receipt waits and goes out when one binds, as a real SMSC stores them.

Message ids (`id_format`): "hex" = 8 upper-case hex digits (0000001F) in submit_sm_resp, receipt text
and receipted_message_id; "dec" = 10 decimal digits (0000000031) everywhere; "hex-dec" = hex in
submit_sm_resp but decimal in the receipt text and no receipted_message_id TLV (the mismatch Jasmin's
dlr_msgid exists for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from omnirelay.channels.smpp import pdu
from omnirelay.channels.smpp.session import LinkLost, SmppSession
from omnirelay.core import gsm7
from omnirelay.core.sms import encode_sms, parse_concat_udh, split_short_message
from omnirelay.smsc.rules import DEFAULT_RULES, MESSAGE_STATE, Outcome, Rule

log = logging.getLogger(__name__)

IdFormat = Literal["hex", "dec", "hex-dec", "hex-dec-tlv"]
ReceiptCoding = Literal["latin-1", "ucs2"]
MultipartReceipts = Literal["every", "first", "last"]
Split = Literal["udh8", "udh16", "sar"]
_RECEIVING = frozenset({pdu.Command.BIND_RECEIVER, pdu.Command.BIND_TRANSCEIVER})
_REDELIVER_AFTER = 1.0
_KNOWN_LIMIT = 100_000  # messages query_sm can ask about; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class _Known:
    """What query_sm answers about a message the simulator accepted."""

    state: str | None  # the receipt state it reaches, None for a message that never gets one
    err: int
    final_at: float  # loop time at which it reaches that state (when its receipt is due)


@dataclass(frozen=True, slots=True)
class Submission:
    """A submit_sm the simulator accepted (kept for tests and /stats)."""

    message_id: str
    system_id: str
    source_addr: str
    source_addr_ton: int
    destination_addr: str
    dest_addr_ton: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    udh: bytes
    text: str


@dataclass(slots=True)
class _Outgoing:
    """A deliver_sm waiting to reach a receiver of `system_id`."""

    system_id: str | None
    fields: dict[str, Any]
    kind: Literal["receipt", "inbound"]


@dataclass(slots=True)
class Stats:
    binds: int = 0
    bind_failures: int = 0
    submitted: int = 0
    rejected: int = 0
    throttled: int = 0
    queue_full: int = 0
    receipts_sent: int = 0
    inbound_sent: int = 0
    drops: int = 0
    unbinds: int = 0  # sessions that ended with unbind
    closed_without_unbind: int = 0  # bound sessions that just went away (an ESME that crashed)
    by_system_id: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _decode_text(payload: bytes, data_coding: int) -> str:
    if data_coding == 8:
        return payload.decode("utf-16-be", errors="replace")
    try:
        return gsm7.decode_septets(payload)
    except ValueError:
        return payload.decode("latin-1")


class SmscSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 2775, *,
                 users: Mapping[str, str] | None = None, rules: Sequence[Rule] = DEFAULT_RULES,
                 receipt_delay: float = 0.2, id_format: IdFormat = "hex", system_id: str = "OMNISMSC",
                 throttle_fraction: float = 0.0, throttle_rate: float = 0.0,
                 queue_full_fraction: float = 0.0, drop_after: int | None = None,
                 window: int = 100, ssl_context: ssl.SSLContext | None = None, record: bool = True,
                 seed: int | None = None, id_start: int = 1, receipt_coding: ReceiptCoding = "latin-1",
                 multipart_receipts: MultipartReceipts = "every") -> None:
        """`users` maps system_id -> password; None accepts any bind. `throttle_rate` > 0 answers
        ESME_RTHROTTLED to submits beyond that many per second (all binds together);
        `throttle_fraction`/`queue_full_fraction` refuse that share of submits at random.
        `drop_after` aborts each connection on its Nth submit_sm, leaving that one unanswered.
        `id_start` is the number of the first message id: a simulator restarted with the same
        `id_start` hands out ids it handed out before, as SMSCs that restart, wrap or reset their
        counters daily do."""
        if id_format not in ("hex", "dec", "hex-dec", "hex-dec-tlv"):
            raise ValueError(f"id_format must be hex, dec, hex-dec or hex-dec-tlv, not {id_format!r}")
        if receipt_coding not in ("latin-1", "ucs2") or multipart_receipts not in ("every", "first",
                                                                                   "last"):
            raise ValueError("receipt_coding is latin-1 or ucs2; multipart_receipts every, first or last")
        self.receipt_coding = receipt_coding
        self.multipart_receipts = multipart_receipts
        self.host = host
        self.port = port
        self.users = dict(users) if users is not None else None
        self.rules = [(rule, rule.outcome()) for rule in rules]
        self.receipt_delay = receipt_delay
        self.id_format = id_format
        self.system_id = system_id
        self.throttle_fraction = throttle_fraction
        self.throttle_rate = throttle_rate
        self.queue_full_fraction = queue_full_fraction
        self.drop_after = drop_after
        self.window = window
        self.ssl_context = ssl_context
        self.record = record
        self.stats = Stats()
        self.submissions: list[Submission] = []
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._sessions: set[SmppSession] = set()
        self._receivers: dict[str, deque[SmppSession]] = defaultdict(deque)
        self._pending: dict[str | None, deque[_Outgoing]] = defaultdict(deque)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False  # timers still due after stop() find this and do nothing
        if id_start < 1:
            raise ValueError("id_start must be at least 1")
        self._next_id = id_start - 1
        self._second = 0
        self._in_second = 0
        self._reference = self._random.randrange(256)
        self._known: dict[int, _Known] = {}

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, self.host, self.port,
                                                ssl=self.ssl_context)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("SMSC simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for session in list(self._sessions):
            session.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def drop_links(self) -> int:
        """Abort every connection now (as a network failure would); returns how many."""
        sessions = list(self._sessions)
        for session in sessions:
            session.dropped = True
            session.abort()
        self.stats.drops += len(sessions)
        return len(sessions)

    def restart_ids(self, next_id: int = 1) -> None:
        """Hand out `next_id` next and count on from there, reusing ids already given out."""
        if next_id < 1:
            raise ValueError("next_id must be at least 1")
        self._next_id = next_id - 1

    def snapshot(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "binds": stats.binds, "bind_failures": stats.bind_failures, "submitted": stats.submitted,
            "rejected": stats.rejected, "throttled": stats.throttled, "queue_full": stats.queue_full,
            "receipts_sent": stats.receipts_sent, "inbound_sent": stats.inbound_sent, "drops": stats.drops,
            "unbinds": stats.unbinds, "closed_without_unbind": stats.closed_without_unbind,
            "receipts_pending": sum(len(queue) for queue in self._pending.values()),
            "sessions": len(self._sessions), "submitted_by_system_id": dict(stats.by_system_id),
            "next_id": self._next_id + 1,
        }

    def _new_session(self) -> SmppSession:
        session = SmppSession(self._on_request, window=self.window, name="smsc")
        self._sessions.add(session)
        task = asyncio.ensure_future(self._watch(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return session

    async def _watch(self, session: SmppSession) -> None:
        await session.closed
        if session.bind_command is not None and not (session.unbound or session.dropped
                                                     or self._stopped):
            self.stats.closed_without_unbind += 1
        self._sessions.discard(session)
        receivers = self._receivers.get(session.system_id)
        if receivers and session in receivers:
            receivers.remove(session)

    # --- requests from ESMEs -------------------------------------------------------------------

    def _on_request(self, session: SmppSession, command: int, sequence: int, frame: bytes) -> None:
        if command == pdu.Command.SUBMIT_SM:
            session.submits_received += 1
            if self.drop_after is not None and session.submits_received >= self.drop_after:
                self.stats.drops += 1
                session.dropped = True
                session.abort()  # the submit is left unanswered: its fate is unknown to the ESME
                return
            self._on_submit(session, sequence, frame, pdu.Command.SUBMIT_SM_RESP)
        elif command == pdu.Command.DATA_SM:
            # data_sm (§4.7) is a submit in another shape: the same rules, throttling and receipts
            self._on_submit(session, sequence, frame, pdu.Command.DATA_SM_RESP)
        elif command == pdu.Command.QUERY_SM:
            self._on_query(session, sequence, frame)
        elif command == pdu.Command.ENQUIRE_LINK:
            session.respond(pdu.Command.ENQUIRE_LINK_RESP, sequence)
        elif command in pdu.BIND_COMMANDS:
            self._on_bind(session, command, sequence, frame)
        elif command == pdu.Command.UNBIND:
            self.stats.unbinds += 1
            session.unbound = True
            session.respond(pdu.Command.UNBIND_RESP, sequence)
            session.close()
        else:
            session.respond(pdu.Command.GENERIC_NACK, sequence, status=pdu.Status.RINVCMDID)

    def _on_bind(self, session: SmppSession, command: int, sequence: int, frame: bytes) -> None:
        try:
            bind = pdu.decode_bind(frame)
        except (ValueError, IndexError):
            session.send(pdu.encode_bind_resp(command, sequence, pdu.Status.RBINDFAIL, ""))
            return
        status = pdu.Status.ROK
        if session.bind_command is not None:
            status = pdu.Status.RALYBND
        elif self.users is not None and bind.system_id not in self.users:
            status = pdu.Status.RINVSYSID
        elif self.users is not None and self.users[bind.system_id] != bind.password:
            status = pdu.Status.RINVPASWD
        session.send(pdu.encode_bind_resp(command, sequence, status, self.system_id))
        if status != pdu.Status.ROK:
            self.stats.bind_failures += status != pdu.Status.RALYBND
            return
        self.stats.binds += 1
        session.system_id = bind.system_id
        session.bind_command = command
        if command in _RECEIVING:
            self._receivers[bind.system_id].append(session)
            self._flush(bind.system_id)
            self._flush(None)

    def _on_submit(self, session: SmppSession, sequence: int, frame: bytes, resp: int) -> None:
        def refuse(status: int) -> None:
            session.send(pdu.encode_message_id_resp(resp, sequence, status))

        if session.bind_command not in (pdu.Command.BIND_TRANSMITTER, pdu.Command.BIND_TRANSCEIVER):
            refuse(pdu.Status.RINVBNDSTS)
            return
        try:
            message = pdu.decode_short_message(frame)
        except ValueError:
            refuse(pdu.Status.RSYSERR)
            return
        if self._over_rate() or self._random.random() < self.throttle_fraction:
            self.stats.throttled += 1
            refuse(pdu.Status.RTHROTTLED)
            return
        if self._random.random() < self.queue_full_fraction:
            self.stats.queue_full += 1
            refuse(pdu.Status.RMSGQFUL)
            return
        outcome = self._decide(message.destination_addr)
        if outcome.reject_status:
            self.stats.rejected += 1
            refuse(outcome.reject_status)
            return
        self._next_id += 1
        number = self._next_id
        message_id = f"{number:010d}" if self.id_format == "dec" else f"{number:08X}"
        session.send(pdu.encode_message_id_resp(resp, sequence, 0, message_id))
        self._remember(number, outcome)
        self.stats.submitted += 1
        self.stats.by_system_id[session.system_id] += 1
        udh, payload = b"", message.short_message
        if message.esm_class & 0x40:
            with contextlib.suppress(ValueError):
                udh, payload = split_short_message(payload)
        text = _decode_text(payload, message.data_coding)
        if self.record:
            self.submissions.append(Submission(
                message_id, session.system_id, message.source_addr, message.source_addr_ton,
                message.destination_addr, message.dest_addr_ton, message.esm_class, message.data_coding,
                message.registered_delivery, message.short_message, udh, text))
        if (message.registered_delivery & 0x01 and outcome.receipt is not None
                and self._receipt_for_part(udh)):
            receipt = self._receipt(number, message, outcome, text)
            outgoing = _Outgoing(session.system_id, receipt, "receipt")
            asyncio.get_running_loop().call_later(self.receipt_delay, self._send_later, session, outgoing)

    def _remember(self, number: int, outcome: Outcome) -> None:
        known = self._known
        known.pop(number, None)  # an id handed out again is a new message
        if len(known) >= _KNOWN_LIMIT:
            del known[next(iter(known))]
        final_at = asyncio.get_running_loop().time() + self.receipt_delay
        known[number] = _Known(outcome.receipt, outcome.err, final_at)

    def _on_query(self, session: SmppSession, sequence: int, frame: bytes) -> None:
        try:
            message_id, _source = pdu.decode_query_sm(frame)
            number = int(message_id, 10 if self.id_format == "dec" else 16)
        except (ValueError, IndexError):
            number = -1
            message_id = ""
        known = self._known.get(number)
        if known is None:
            session.send(pdu.encode_query_sm_resp(
                sequence, pdu.QueryResult(message_id, "", MESSAGE_STATE["UNKNOWN"], 0),
                pdu.Status.RQUERYFAIL))
            return
        loop_now = asyncio.get_running_loop().time()
        if known.state is None or loop_now < known.final_at:
            result = pdu.QueryResult(message_id, "", MESSAGE_STATE["ENROUTE"], 0)
        else:
            done = datetime.now(UTC).timestamp() - (loop_now - known.final_at)
            final_date = datetime.fromtimestamp(done, UTC).strftime("%y%m%d%H%M%S") + "000+"
            result = pdu.QueryResult(message_id, final_date, MESSAGE_STATE[known.state], known.err)
        session.send(pdu.encode_query_sm_resp(sequence, result))

    def _over_rate(self) -> bool:
        if self.throttle_rate <= 0:
            return False
        second = int(asyncio.get_running_loop().time())
        if second != self._second:
            self._second, self._in_second = second, 0
        self._in_second += 1
        return self._in_second > self.throttle_rate

    def _decide(self, destination: str) -> Outcome:
        for rule, outcome in self.rules:
            if rule.matches(destination):
                return outcome
        return Outcome()

    def _receipt_for_part(self, udh: bytes) -> bool:
        """Aggregators that send one receipt per concatenated message send it for its first or
        its last part (`multipart_receipts`); a message in one part always gets its receipt."""
        found = parse_concat_udh(udh) if udh else None
        if found is None or self.multipart_receipts == "every":
            return True
        _, total, seq = found
        return seq == (1 if self.multipart_receipts == "first" else total)

    def _receipt(self, number: int, message: pdu.ShortMessage, outcome: Outcome,
                 text: str) -> dict[str, Any]:
        """Ids as `id_format` says; "hex-dec-tlv" writes the TLV in decimal too. UCS-2 receipts
        (`receipt_coding`) carry their text in data_coding 8 and no TLVs, as some SMSCs do when
        the original text was not Latin."""
        state = outcome.receipt or "DELIVRD"
        stamp = datetime.now(UTC).strftime("%y%m%d%H%M")
        hex_id = f"{number:08X}"
        text_id = hex_id if self.id_format == "hex" else f"{number:010d}"
        body = (f"id:{text_id} sub:001 dlvrd:{'001' if state == 'DELIVRD' else '000'} submit date:{stamp} "
                f"done date:{stamp} stat:{state} err:{outcome.err:03d} text:{text[:20]}")
        fields = {"source_addr": message.destination_addr, "source_addr_ton": message.dest_addr_ton,
                  "destination_addr": message.source_addr, "dest_addr_ton": message.source_addr_ton,
                  "esm_class": 0x04}
        if self.receipt_coding == "ucs2":
            return {**fields, "short_message": body.encode("utf-16-be"), "data_coding": 8}
        tlvs = {pdu.Tag.MESSAGE_STATE: bytes((MESSAGE_STATE[state],))}
        if self.id_format != "hex-dec":
            tlvs[pdu.Tag.RECEIPTED_MESSAGE_ID] = text_id.encode() + b"\0"
        return {**fields, "short_message": body.encode("latin-1", errors="replace"), "tlvs": tlvs}

    def inject_receipt(self, message_id: str, state: str = "DELIVRD", *, system_id: str | None = None,
                       short_message: bytes | None = None, data_coding: int = 0) -> None:
        """Send a receipt for `message_id` (an id this simulator may never have handed out: another
        system's traffic, an SMSC that lost track), or with `short_message`, exactly that text."""
        body = short_message if short_message is not None else (
            f"id:{message_id} sub:001 dlvrd:000 submit date:{datetime.now(UTC):%y%m%d%H%M} "
            f"done date:{datetime.now(UTC):%y%m%d%H%M} stat:{state} err:000 text:").encode("latin-1")
        fields = {"source_addr": "37255500000", "source_addr_ton": 1, "destination_addr": "Omni",
                  "dest_addr_ton": 5, "esm_class": 0x04, "short_message": body,
                  "data_coding": data_coding}
        self._send_later(None, _Outgoing(system_id, fields, "receipt"))

    # --- deliver_sm out ------------------------------------------------------------------------

    def _send_later(self, preferred: SmppSession | None, outgoing: _Outgoing) -> None:
        if self._stopped:
            return
        if preferred is not None and preferred.is_open and preferred.bind_command in _RECEIVING:
            session: SmppSession | None = preferred
        else:
            session = self._receiver(outgoing.system_id)
        if session is None:
            self._pending[outgoing.system_id].append(outgoing)
            return
        task = asyncio.ensure_future(self._deliver(session, outgoing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _receiver(self, system_id: str | None) -> SmppSession | None:
        if system_id is None:
            pools = list(self._receivers.values())
        else:
            pools = [self._receivers.get(system_id, deque())]
        for pool in pools:
            for _ in range(len(pool)):
                session = pool[0]
                pool.rotate(-1)
                if session.is_open:
                    return session
        return None

    async def _deliver(self, session: SmppSession, outgoing: _Outgoing) -> None:
        fields = outgoing.fields
        try:
            status, _ = await session.request(
                lambda sequence: pdu.encode_deliver_sm(sequence, **fields), 10.0)
        except (LinkLost, TimeoutError):
            status = -1
        if status == pdu.Status.ROK:
            if outgoing.kind == "receipt":
                self.stats.receipts_sent += 1
            else:
                self.stats.inbound_sent += 1
            return
        # Not acknowledged: keep it and try again, on whichever receiver is bound by then.
        self._pending[outgoing.system_id].append(outgoing)
        asyncio.get_running_loop().call_later(_REDELIVER_AFTER, self._flush, outgoing.system_id)

    def _flush(self, system_id: str | None) -> None:
        if self._stopped:
            return
        queue = self._pending.get(system_id)
        while queue:
            session = self._receiver(system_id)
            if session is None:
                return
            self._send_later(session, queue.popleft())

    # --- inbound (mobile-originated) messages ---------------------------------------------------

    def inject_inbound(self, sender: str, recipient: str, text: str, *, split: Split = "udh8",
                       system_id: str | None = None, sender_ton: int | None = None,
                       recipient_ton: int | None = None) -> int:
        """Send an SMS from `sender` to `recipient` to a receiver bind (of `system_id`, or any); a text
        longer than one SMS goes as concatenated parts, joined by `split`. Returns the part count.
        The TONs are guessed from the addresses ("+..." international) unless given: SMSCs send
        full international numbers with TON 0 (unknown) too, always without the "+"."""
        encoded = encode_sms(text, autoconvert="off")
        guessed = 1 if sender.startswith("+") else (5 if not sender.isdigit() else 0)
        source_ton = guessed if sender_ton is None else sender_ton
        dest_ton = (1 if recipient.startswith("+") else 0) if recipient_ton is None else recipient_ton
        base = {"source_addr": sender.lstrip("+"), "source_addr_ton": source_ton,
                "destination_addr": recipient.lstrip("+"), "dest_addr_ton": dest_ton}
        self._reference = (self._reference + 1) % 256
        total = len(encoded.parts)
        for part in encoded.parts:
            fields: dict[str, Any] = dict(base, data_coding=part.data_coding)
            found = parse_concat_udh(part.udh) if total > 1 else None
            if found is None:
                fields.update(short_message=part.payload, esm_class=0)
            elif split == "udh8":
                fields.update(short_message=part.short_message, esm_class=0x40)
            elif split == "udh16":
                reference = 0x4200 | self._reference
                udh = bytes((6, 0x08, 4, reference >> 8, reference & 0xFF, found[1], found[2]))
                fields.update(short_message=udh + part.payload, esm_class=0x40)
            else:
                fields.update(short_message=part.payload, esm_class=0, tlvs={
                    pdu.Tag.SAR_MSG_REF_NUM: (0x4200 | self._reference).to_bytes(2, "big"),
                    pdu.Tag.SAR_TOTAL_SEGMENTS: bytes((found[1],)),
                    pdu.Tag.SAR_SEGMENT_SEQNUM: bytes((found[2],))})
            self._send_later(None, _Outgoing(system_id, fields, "inbound"))
        return total
