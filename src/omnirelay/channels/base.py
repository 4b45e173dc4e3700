"""The channel protocol: how the delivery engine hands work to an upstream and hears back.

A channel sends a batch of attempts and reports what happens later (receipts, inbound messages)
through a `ChannelSink` the engine gives it at start. Adding a channel touches `channels/` and the
configuration only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from starlette.routing import BaseRoute

# The values a channel sends and reports are the delivery vocabulary the engine and the store
# speak too (core.delivery); re-exported so that channel code finds them beside the protocol.
from omnirelay.core.delivery import (
    AwaitingReceipt,
    InboundFragment,
    InboundMessage,
    OutboundMessage,
    SendResult,
    StatusReport,
)
from omnirelay.supervisor import Supervisor

__all__ = [
    "CHANNEL_NAMES", "AwaitingReceipt", "Channel", "ChannelSink", "HasConnectors",
    "HasWebhookRoutes", "InboundFragment", "InboundMessage", "OutboundMessage", "ReceiptLedger",
    "SendResult", "StatusReport",
]

CHANNEL_NAMES = ("sms", "viber", "whatsapp", "telegram", "rcs")


class ChannelSink(Protocol):
    """The engine's side, given to a channel at start. Every call is durable once it returns, so a
    channel may acknowledge upstream (e.g. answer deliver_sm_resp) only after awaiting it.

    A channel runs its long-lived tasks (binds, receive pumps) under `supervisor`, which logs,
    counts and restarts them when they fail, and shows them in the readiness report."""

    supervisor: Supervisor

    async def report_statuses(self, reports: Sequence[StatusReport]) -> None: ...

    async def receive_inbound(self, messages: Sequence[InboundMessage]) -> None: ...

    async def receive_fragments(self, fragments: Sequence[InboundFragment]) -> None: ...

    async def remember_subscriber(self, provider: str, phone: str, address: str) -> None:
        """Record that `phone` is reachable at `address` (a Viber user id, a Telegram chat id)."""
        ...

    async def lookup_subscribers(self, provider: str, phones: Sequence[str]) -> dict[str, str]:
        """phone -> address for the phones that are known subscribers of `provider`."""
        ...


@runtime_checkable
class ReceiptLedger(Protocol):
    """A sink that can list the accepted attempts of some channels still waiting for a receipt:
    for an upstream that keeps its receipts in memory (the sandbox) and re-derives them after a
    restart, so that a crash does not turn them into false EXPIRED."""

    async def awaiting_receipts(self, channels: Sequence[str]) -> list[AwaitingReceipt]: ...


@runtime_checkable
class Channel(Protocol):
    """An upstream that serves one or more channel names (e.g. the sandbox serves them all)."""

    name: str

    async def start(self, sink: ChannelSink) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send a batch; return one result per message, in any order, keyed by message_id.
        Must not raise for a per-message problem: report it in that message's result."""
        ...


@runtime_checkable
class HasConnectors(Protocol):
    """A channel with links of its own to report (SMPP binds): connector name -> its state,
    {"state": "bound" | "binding" | "down", "last_error": ...}, for the readiness report."""

    def connector_states(self) -> dict[str, dict[str, Any]]: ...


class HasWebhookRoutes(Protocol):
    """A channel whose upstream calls us back over HTTP (WhatsApp, Viber, Telegram) also offers
    Starlette routes; the app mounts them under /webhooks/<provider name>."""

    def routes(self) -> list[BaseRoute]: ...
