"""The engine's side of the channel protocol: what channels report becomes durable here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from omnirelay.core.delivery import (
    AwaitingReceipt,
    InboundFragment,
    InboundMessage,
    StatusReport,
)
from omnirelay.core.reports import WebhookDraft, messente_inbound
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.wakeup import WEBHOOKS, Wakeup, wake_for
from omnirelay.metrics import Metrics
from omnirelay.store.queries import Account, Store
from omnirelay.supervisor import Supervisor


def storable(text: str) -> str:
    """What an upstream sent, as a text column can hold it: PostgreSQL's text refuses NUL, and
    a refused inbound message is dropped after it was acknowledged upstream. A NUL (a UCS-2
    SMS can carry one) becomes U+FFFD, as any undecodable character would."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def inbound_webhook(message_id: str, message: InboundMessage, account: Account) -> WebhookDraft | None:
    if not account.inbound_url:
        return None
    body = messente_inbound(msg_id=message_id, channel=message.channel,
                            recipient=message.recipient, sender=message.sender,
                            text=message.text, received_at=message.received_at)
    return WebhookDraft(account.inbound_url, "inbound", body)


class EngineSink:
    def __init__(self, store: Store, wakeup: Wakeup, supervisor: Supervisor,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.wakeup = wakeup
        self.supervisor = supervisor
        self.metrics = metrics or Metrics()

    async def report_statuses(self, reports: Sequence[StatusReport]) -> None:
        if not reports:
            return
        now = utcnow()
        # a report that does not say when it happened happened when it arrived
        effects = await self.store.apply_reports([
            r if r.occurred_at is not None else replace(r, occurred_at=now) for r in reports
        ], now)
        wake_for(self.wakeup, effects)
        for report in reports:
            self.metrics.statuses.labels(report.channel).inc()

    async def awaiting_receipts(self, channels: Sequence[str]) -> list[AwaitingReceipt]:
        return await self.store.sent_attempts(channels)

    async def receive_inbound(self, messages: Sequence[InboundMessage]) -> None:
        if not messages:
            return
        await self.store_inbound([replace(m, sender=storable(m.sender),
                                          recipient=storable(m.recipient), text=storable(m.text))
                                  for m in messages])

    async def receive_fragments(self, fragments: Sequence[InboundFragment]) -> None:
        if not fragments:
            return
        complete = await self.store.add_fragments([
            replace(f, sender=storable(f.sender), recipient=storable(f.recipient),
                    group_key=storable(f.group_key), text=storable(f.text)) for f in fragments])
        if complete:
            await self.store_inbound(complete)

    async def store_inbound(self, messages: Sequence[InboundMessage]) -> None:
        await self.store.store_inbound(messages, inbound_webhook, utcnow())
        self.wakeup.wake(WEBHOOKS)

    async def remember_subscriber(self, provider: str, phone: str, address: str) -> None:
        await self.store.remember_subscriber(provider, phone, address, utcnow())

    async def lookup_subscribers(self, provider: str, phones: Sequence[str]) -> dict[str, str]:
        return await self.store.lookup_subscribers(provider, phones)
