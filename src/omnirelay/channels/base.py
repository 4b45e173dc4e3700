"""The channel protocol: how the delivery engine hands work to an upstream and hears back.

A channel sends a batch of attempts and reports what happens later (receipts, inbound messages)
through a `ChannelSink` the engine gives it at start. Adding a channel touches `channels/` and the
configuration only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from starlette.routing import BaseRoute

from omnirelay.core.statuses import Status
from omnirelay.supervisor import Supervisor

CHANNEL_NAMES = ("sms", "viber", "whatsapp", "telegram", "rcs")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One attempt, ready to send. `content` is the validated channel variant as the API received it
    (minus `channel`, `sender`, `validity` and `ttl`), e.g. {"text": "hi"} for SMS or
    {"template": {...}} for WhatsApp."""

    message_id: str
    omnimessage_id: str
    account_id: int
    channel: str
    to: str
    sender: str
    content: dict[str, Any]
    deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the upstream said at submit time.

    - accepted with no status: the upstream took it; a receipt will follow (or validity expires).
    - `status` set: a status known right away (ACK/ACCEPTD as progress, or a terminal one such as
      REJECTD/FAILED/UNDELIV with its `err`, which ends the attempt and starts the next variant).
    - `retry_after` set: a transient refusal (throttled, queue full, link down); the engine puts
      the attempt back in the queue to try again after that many seconds. Nothing was sent.
    - `provider_refs`: the upstream's ids for the message (one per SMS part), used to match the
      receipts that come later, possibly on another connection or process.
    """

    message_id: str
    status: Status | None = None
    err: int | None = None
    error: str | None = None
    provider_refs: tuple[str, ...] = ()
    parts_count: int = 1
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A status the upstream reported after submit. Identify the attempt by our `message_id` when
    the upstream echoes it back, otherwise by `provider_ref` (one of the refs from SendResult)."""

    channel: str
    status: Status
    message_id: str | None = None
    provider_ref: str | None = None
    err: int | None = None
    error: str | None = None
    occurred_at: datetime | None = None
    # which part receipts decide a multi-part message (core.multipart): every, any, first, last
    parts: str = "every"


@dataclass(frozen=True, slots=True)
class AwaitingReceipt:
    """An attempt an upstream accepted and has not reported on yet (state `sent`)."""

    message_id: str
    channel: str
    to: str
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message an end user sent to one of our numbers or bots."""

    channel: str
    sender: str
    recipient: str
    text: str
    received_at: datetime
    provider_ref: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundFragment:
    """One part of a concatenated inbound message. Parts sharing `group_key` (which the channel
    makes unique per sender, recipient and concatenation reference) are joined in `seq` order
    (1-based) once all `total` have arrived, or with what arrived when the reassembly times out."""

    channel: str
    sender: str
    recipient: str
    group_key: str
    total: int
    seq: int
    text: str
    received_at: datetime


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
