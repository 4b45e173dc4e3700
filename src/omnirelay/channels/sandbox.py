"""The sandbox upstream: serves every channel with outcomes chosen by the destination number.

It lets the gateway work with no upstream configured and makes fallback chains easy to try. The
outcome depends on the last four digits of the number (see SANDBOX_RULES and the README); every
other number is delivered. Reports come after `delay_ms`.

Like an upstream, the sandbox keeps the receipts it owes until they are stored; unlike one, it
keeps them in memory. So at start it asks the store for its channels' accepted attempts still
waiting for a receipt and re-derives each from the rules above, due `delay_ms` after the attempt
was sent (at once if that has passed): a crash or restart within `delay_ms` does not leave them to
expire. A receipt that another live process already stored is stored again harmlessly (a status
an attempt already has is not recorded twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from omnirelay.channels.base import (
    CHANNEL_NAMES,
    AwaitingReceipt,
    ChannelSink,
    OutboundMessage,
    ReceiptLedger,
    SendResult,
    StatusReport,
)
from omnirelay.core.sms import content_options, count_segments
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import utcnow

log = logging.getLogger(__name__)

CHAT_CHANNELS = frozenset({"viber", "whatsapp", "telegram", "rcs"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """`status` None: the upstream accepts and never reports (validity will expire).
    `at_submit`: refused when submitted rather than reported later."""

    status: Status | None
    err: int = Err.NO_ERROR
    at_submit: bool = False


DELIVERED = Outcome(Status.DELIVRD)
SILENT = Outcome(None)

# suffix -> (outcome on chat channels, outcome on SMS)
SANDBOX_RULES: dict[str, tuple[Outcome, Outcome]] = {
    "9990": (SILENT, SILENT),
    "9991": (Outcome(Status.UNDELIV, Err.DELIVERY_FAILURE),) * 2,
    "9992": (Outcome(Status.REJECTD, Err.INVALID_NUMBER, at_submit=True),) * 2,
    "9993": (Outcome(Status.FAILED, Err.DELIVERY_FAILURE),) * 2,
    "9994": (Outcome(Status.SEEN, Err.SEEN), DELIVERED),
    "9980": (SILENT, DELIVERED),
    "9981": (Outcome(Status.UNDELIV, Err.DELIVERY_FAILURE), DELIVERED),
    "9982": (Outcome(Status.FAILED, Err.UNROUTABLE, at_submit=True), DELIVERED),
}


def outcome_for(channel: str, to: str) -> Outcome:
    rule = SANDBOX_RULES.get(to[-4:])
    if rule is None:
        return DELIVERED
    return rule[0] if channel in CHAT_CHANNELS else rule[1]


def receipt_for(attempt: AwaitingReceipt) -> StatusReport | None:
    """The receipt the rules promise for an accepted attempt; None for a silent number."""
    outcome = outcome_for(attempt.channel, attempt.to)
    if outcome.status is None or outcome.at_submit:
        return None
    return StatusReport(channel=attempt.channel, status=outcome.status,
                        message_id=attempt.message_id, err=outcome.err)


def _parts(message: OutboundMessage) -> int:
    if message.channel != "sms":
        return 1
    try:
        return count_segments(message.content.get("text", ""), **content_options(message.content))
    except ValueError:
        return 1


class SandboxChannel:
    name = "sandbox"

    def __init__(self, delay_ms: int = 100, send_delay_ms: int = 0,
                 channels: Sequence[str] = CHANNEL_NAMES) -> None:
        self.delay = delay_ms / 1000
        self.send_delay = send_delay_ms / 1000
        self.channels = tuple(channels)  # the ones it serves, whose receipts it re-derives
        self._sink: ChannelSink | None = None
        self._due: list[StatusReport] = []
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent: int = 0

    async def start(self, sink: ChannelSink) -> None:
        self._sink = sink
        if isinstance(sink, ReceiptLedger) and self.channels:
            self._spawn(self._recover(sink))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recover(self, ledger: ReceiptLedger) -> None:
        """Re-derive the receipts owed for attempts sent before this start."""
        pause = 0.1
        while True:
            try:
                awaiting = await ledger.awaiting_receipts(self.channels)
                break
            except Exception:
                log.exception("listing the attempts awaiting sandbox receipts failed; retrying "
                              "in %.1f s", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        reports = [report for attempt in awaiting
                   if (report := receipt_for(attempt)) is not None]
        if not reports:
            return
        log.info("sandbox: re-deriving %d receipts owed from before this start", len(reports))
        now = utcnow()
        latest = max((a.sent_at for a in awaiting if a.sent_at is not None), default=now)
        await self._report_later(reports, max(0.0, self.delay - (now - latest).total_seconds()))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        results: list[SendResult] = []
        later: list[StatusReport] = []
        for message in batch:
            self.sent += 1
            outcome = outcome_for(message.channel, message.to)
            if outcome.at_submit and outcome.status is not None:
                results.append(SendResult(message.message_id, status=outcome.status,
                                          err=outcome.err))
                continue
            results.append(SendResult(message.message_id, parts_count=_parts(message)))
            if outcome.status is not None:
                later.append(StatusReport(channel=message.channel, status=outcome.status,
                                          message_id=message.message_id, err=outcome.err))
        if later:
            self._spawn(self._report_later(later, self.delay))
        return results

    async def _report_later(self, reports: list[StatusReport], delay: float) -> None:
        await asyncio.sleep(delay)
        assert self._sink is not None
        stamped = [StatusReport(channel=r.channel, status=r.status, message_id=r.message_id,
                                err=r.err, occurred_at=utcnow()) for r in reports]
        # An upstream keeps a receipt until we acknowledge it; so does the sandbox.
        pause = 0.1
        while True:
            try:
                await self._sink.report_statuses(stamped)
                return
            except Exception:
                log.exception("storing %d sandbox reports failed; retrying in %.1f s",
                              len(stamped), pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
