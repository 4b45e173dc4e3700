"""The SMPP channel: SMS out through SMSC connectors, receipts and inbound SMS back to the engine.

Sending a batch hands each connector all of its parts in one call, so the connectors' windows stay
full. The parts of one message are adjacent in it, so they go out back to back (in order) rather than
behind every other message's first part: a link that breaks under load then cuts few messages midway.
Any part refused for good fails the message; any part that could not go out now makes the whole
message come back later (retry_after). One SendResult per message, with a provider_ref per part.

provider_ref = "<ref_scope>:<normalised SMSC message id>" (see receipts.normalize_message_id). The
scope (by default "<system_id>@<host>:<port>") keeps the ids of two SMSCs apart; connectors that share
one SMSC account, whose receipts may arrive on either's bind, should set the same `ref_scope`.

Receipts and inbound messages arriving together are handed to the sink in one call per kind, and
each deliver_sm/data_sm is acknowledged only after that call returned (it is durable then). If the
sink fails, they are answered with ESME_RX_T_APPN so that the SMSC delivers them again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from omnirelay.channels.base import (
    ChannelSink,
    InboundFragment,
    InboundMessage,
    OutboundMessage,
    SendResult,
    StatusReport,
)
from omnirelay.channels.smpp import pdu
from omnirelay.channels.smpp.connector import (
    Accepted,
    Connector,
    PartOutcome,
    Refused,
    RetryLater,
    SubmitFields,
)
from omnirelay.channels.smpp.inbound import read_inbound
from omnirelay.channels.smpp.outcomes import permanent_refusal
from omnirelay.channels.smpp.receipts import (
    describe_pdu,
    is_receipt,
    map_stat,
    normalize_message_id,
    read_receipt,
)
from omnirelay.channels.smpp.routing import Router
from omnirelay.channels.smpp.session import SmppSession
from omnirelay.channels.smpp.settings import ConnectorSettings, SmppSettings
from omnirelay.core.sms import TooManyParts, content_options, encode_sms
from omnirelay.core.statuses import Err, Status, error_text

log = logging.getLogger(__name__)

_DRAIN_BATCH = 1000


@dataclass(frozen=True, slots=True)
class _Plan:
    connector: Connector
    parts: list[SubmitFields]


@dataclass(frozen=True, slots=True)
class _Planned:
    index: int  # in the batch
    plan: _Plan


@dataclass(frozen=True, slots=True)
class _Delivery:
    connector: Connector
    session: SmppSession
    command: int
    sequence: int
    frame: bytes


def source_ton_npi(sender: str, settings: ConnectorSettings) -> tuple[str, int, int]:
    """(address, ton, npi) for a sender: alphanumeric -> 5/0; +digits or more than 8 digits -> 1/1
    (international, + stripped); a short code -> 0/1. Configured TON/NPI win over the guess."""
    address = sender.strip()
    digits = address[1:] if address.startswith("+") else address
    if digits.isdigit() and (address.startswith("+") or len(digits) > 8):
        address, ton, npi = digits, 1, 1
    elif digits.isdigit():
        address, ton, npi = digits, 0, 1
    else:
        ton, npi = 5, 0
    return (address, settings.source_ton if settings.source_ton is not None else ton,
            settings.source_npi if settings.source_npi is not None else npi)


def validity_period(deadline: datetime | None) -> str:
    """SMPP absolute time in UTC, YYMMDDhhmmsstnnp with t=0, nn=00, p='+'."""
    if deadline is None:
        return ""
    at = deadline.astimezone(UTC) if deadline.tzinfo is not None else deadline
    # formatted by hand: strftime was a visible share of every submit
    return (f"{at.year % 100:02d}{at.month:02d}{at.day:02d}{at.hour:02d}{at.minute:02d}"
            f"{at.second:02d}000+")


class SmppChannel:
    name = "smpp"

    def __init__(self, settings: SmppSettings) -> None:
        self.settings = settings
        self.connectors: dict[str, Connector] = {
            item.name: Connector(item, self._on_deliver) for item in settings.connectors}
        self._router = Router(settings.routes, list(self.connectors.values()))
        self._sink: ChannelSink | None = None
        self._deliveries: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._pump_name = "smpp/deliveries"
        # Handsets join parts by sender and reference: a rolling counter keeps two long texts sent
        # close together to one number apart (the encoder's default, a checksum of the text,
        # collides 1 time in 256). It starts at random so a restart does not reuse the last ones.
        self._references = itertools.count(random.randrange(256))

    async def start(self, sink: ChannelSink) -> None:
        self._sink = sink
        # Under the supervisor: a pump that died would leave every receipt unanswered.
        self._pump_name = sink.supervisor.spawn("smpp/deliveries", self._pump_deliveries)
        for connector in self.connectors.values():
            await connector.start(sink.supervisor)

    async def stop(self) -> None:
        await asyncio.gather(*(connector.stop() for connector in self.connectors.values()))
        if self._sink is not None:
            await self._sink.supervisor.cancel(self._pump_name)

    def connector_states(self) -> dict[str, dict[str, Any]]:
        return {name: connector.state() for name, connector in self.connectors.items()}

    def bind_states(self) -> dict[tuple[str, str], int]:
        """(connector, role) -> 1 when that bind is up, for /metrics."""
        states: dict[tuple[str, str], int] = {}
        for name, connector in self.connectors.items():
            roles = ("trx",) if connector.settings.bind == "transceiver" else ("tx", "rx")
            up = set(connector.state()["binds"])
            states.update({(name, role): int(role in up) for role in roles})
        return states

    async def wait_ready(self, within: float = 10.0) -> None:
        """Wait until every connector's sending bind is up (for tests and benchmarks)."""
        await asyncio.gather(*(connector.wait_up(within) for connector in self.connectors.values()))

    # --- sending -------------------------------------------------------------------------------

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Every part of the batch goes to its connector in one call (one task per connector, not
        one per message); a message's parts are adjacent in it, so they leave back to back."""
        results: list[SendResult | None] = [None] * len(batch)
        plans: dict[str, tuple[Connector, list[_Planned]]] = {}
        for index, message in enumerate(batch):
            try:
                planned = self._plan(message)
            except Exception as error:  # a bug must not take the other messages of the batch with it
                results[index] = self._broken(message, error)
                continue
            if isinstance(planned, SendResult):
                results[index] = planned
            else:
                plans.setdefault(planned.connector.name, (planned.connector, []))[1].append(
                    _Planned(index, planned))
        await asyncio.gather(*(self._submit_to(connector, items, batch, results)
                               for connector, items in plans.values()))
        return [result for result in results if result is not None]

    async def _submit_to(self, connector: Connector, items: list[_Planned],
                         batch: Sequence[OutboundMessage], results: list[SendResult | None]) -> None:
        try:
            outcomes = await connector.submit_all(
                [fields for item in items for fields in item.plan.parts])
        except Exception as error:
            for item in items:
                results[item.index] = self._broken(batch[item.index], error)
            return
        start = 0
        for item in items:
            count = len(item.plan.parts)
            results[item.index] = self._result(batch[item.index], connector.settings,
                                               outcomes[start:start + count])
            start += count

    @staticmethod
    def _broken(message: OutboundMessage, error: Exception) -> SendResult:
        log.error("SMPP send of %s failed", message.message_id, exc_info=error)
        return SendResult(message.message_id, status=Status.FAILED, err=Err.DELIVERY_FAILURE,
                          error=f"SMPP channel error: {type(error).__name__}")

    def _plan(self, message: OutboundMessage) -> _Plan | SendResult:
        """The connector and the submit_sm of each part, or the result when it cannot be sent."""
        content = message.content
        try:
            encoded = encode_sms(str(content.get("text", "")), **content_options(content),
                                 reference=next(self._references) % 256)
        except TooManyParts as error:
            return SendResult(message.message_id, status=Status.FAILED, err=Err.DELIVERY_FAILURE,
                              error=str(error))
        except ValueError as error:
            return SendResult(message.message_id, status=Status.FAILED, err=Err.DELIVERY_FAILURE,
                              error=f"cannot encode the SMS: {error}")
        connector = self._router.pick(message.to)
        if connector is None:
            if not self._router.routes_for(message.to):
                return SendResult(message.message_id, status=Status.REJECTD, err=Err.UNROUTABLE,
                                  error=error_text(Err.UNROUTABLE), parts_count=encoded.segment_count)
            return SendResult(message.message_id, retry_after=self._router.retry_after(message.to),
                              error="no SMPP connector is up for this destination",
                              parts_count=encoded.segment_count)
        settings = connector.settings
        source, source_ton, source_npi = source_ton_npi(message.sender, settings)
        destination = message.to.strip()
        if settings.dest_ton == 1:
            destination = destination.lstrip("+")
        validity = validity_period(message.deadline)
        return _Plan(connector, [SubmitFields(
            source, source_ton, source_npi, destination, settings.dest_ton, settings.dest_npi,
            part.short_message, part.esm_class, part.data_coding, settings.registered_delivery,
            settings.service_type, validity) for part in encoded.parts])

    def _result(self, message: OutboundMessage, settings: ConnectorSettings,
                outcomes: Sequence[PartOutcome]) -> SendResult:
        """Any part refused for good fails the message; any part not sent now sends it all again."""
        count = len(outcomes)
        refs = [self.provider_ref(settings, outcome.message_id) for outcome in outcomes
                if isinstance(outcome, Accepted)]
        for outcome in outcomes:
            if isinstance(outcome, Refused):
                refusal = permanent_refusal(outcome.command_status)
                return SendResult(message.message_id, status=refusal.status, err=refusal.err,
                                  error=f"{error_text(refusal.err)} "
                                        f"({pdu.status_name(outcome.command_status)})",
                                  provider_refs=tuple(refs), parts_count=count)
        for outcome in outcomes:
            if isinstance(outcome, RetryLater):
                if refs:
                    log.warning("SMPP %s: %d of %d parts not sent (%s); the engine will resend the message",
                                message.message_id, count - len(refs), count, outcome.reason)
                return SendResult(message.message_id, retry_after=outcome.after, error=outcome.reason,
                                  parts_count=count)
        return SendResult(message.message_id, provider_refs=tuple(refs), parts_count=count)

    @staticmethod
    def provider_ref(settings: ConnectorSettings, smsc_id: str) -> str:
        return f"{settings.scope}:{normalize_message_id(smsc_id)}"

    # --- receiving -----------------------------------------------------------------------------

    def _on_deliver(self, connector: Connector, session: SmppSession, command: int, sequence: int,
                    frame: bytes) -> None:
        self._deliveries.put_nowait(_Delivery(connector, session, command, sequence, frame))

    async def _pump_deliveries(self) -> None:
        while True:
            batch = [await self._deliveries.get()]
            while len(batch) < _DRAIN_BATCH and not self._deliveries.empty():
                batch.append(self._deliveries.get_nowait())
            await self._handle(batch)

    async def _handle(self, batch: list[_Delivery]) -> None:
        assert self._sink is not None
        reports: list[StatusReport] = []
        messages: list[InboundMessage] = []
        fragments: list[InboundFragment] = []
        answers: list[tuple[_Delivery, int]] = []
        now = datetime.now(UTC)
        for delivery in batch:
            try:
                message = pdu.decode_short_message(delivery.frame)
            except ValueError as error:
                log.warning("SMPP connector %r: unreadable %s: %s", delivery.connector.name,
                            pdu.Command(delivery.command).name.lower(), error)
                answers.append((delivery, pdu.Status.RX_P_APPN))
                continue
            answers.append((delivery, pdu.Status.ROK))
            if is_receipt(message.esm_class):
                report = self._report(delivery.connector.settings, message)
                if report is not None:
                    reports.append(report)
            else:
                item = read_inbound(delivery.connector.name, message, now)
                if isinstance(item, InboundFragment):
                    fragments.append(item)
                else:
                    messages.append(item)
        try:
            if reports:
                await self._sink.report_statuses(reports)
            if messages:
                await self._sink.receive_inbound(messages)
            if fragments:
                await self._sink.receive_fragments(fragments)
        except Exception:
            log.exception("SMPP: storing %d receipts/inbound messages failed; the SMSC will redeliver",
                          len(batch))
            answers = [(delivery, pdu.Status.RX_T_APPN if status == pdu.Status.ROK else status)
                       for delivery, status in answers]
        for delivery, status in answers:
            response = (pdu.Command.DATA_SM_RESP if delivery.command == pdu.Command.DATA_SM
                        else pdu.Command.DELIVER_SM_RESP)
            if delivery.session.is_open:
                delivery.session.send(pdu.encode_message_id_resp(response, delivery.sequence, status))

    def _report(self, settings: ConnectorSettings, message: pdu.ShortMessage) -> StatusReport | None:
        receipt = read_receipt(message)
        if receipt is None:
            # Acknowledged all the same: redelivered, it would be just as unreadable, and an SMSC
            # that retries may hold back what follows it. So every one is logged, raw.
            log.warning("SMPP connector %r: a receipt without a message id, acknowledged and "
                        "dropped: %s", settings.name, describe_pdu(message))
            return None
        if not receipt.known_stat:
            log.warning("SMPP connector %r: a receipt with an unknown state %r, reported as "
                        "UNKNOWN: %s", settings.name, receipt.stat, describe_pdu(message))
        mapped = map_stat(receipt.stat)
        if mapped is None:
            return None
        status, err = mapped
        smsc_id = receipt.smsc_id(settings.receipt_id_base, settings.submit_id_base)
        return StatusReport(channel="sms", status=status, provider_ref=self.provider_ref(settings, smsc_id),
                            err=err, error=error_text(err), occurred_at=receipt.done_at,
                            parts=settings.multipart_receipts)


def create_channel(settings: Mapping[str, Any]) -> SmppChannel:
    """The channel for a `[providers.smpp]` table; raises ConfigError when it is invalid."""
    return SmppChannel(SmppSettings.from_mapping(settings))
