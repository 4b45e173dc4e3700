"""The delivery vocabulary the store, the engine and the channels share.

One type per fact, so that what a channel reports reaches the store as it is, without a copy of it
field by field at each boundary: an attempt to send (`OutboundMessage`), what the upstream said at
submit time (`SendResult`) and later (`StatusReport`), and what end users send us
(`InboundMessage`, `InboundFragment`). Pure values: no I/O, no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from omnirelay.core.statuses import Status


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One attempt, ready to send. `content` is the validated channel variant as the API received it
    (minus `channel`, `sender`, `validity` and `ttl`), e.g. {"text": "hi"} for SMS or
    {"template": {...}} for WhatsApp.

    `priority`, `due_at` and `tries` are what the claim read of the attempt's queue row: the store
    orders a claim by them (store.ratelimits.fair_order); a channel has no use for them."""

    message_id: str
    omnimessage_id: str
    account_id: int
    channel: str
    to: str
    sender: str
    content: dict[str, Any]
    deadline: datetime | None = None
    priority: int = 0
    due_at: datetime | None = None
    tries: int = 0


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
    """A status for an attempt, reported by its upstream after submit or decided by the gateway
    (expiry, blacklist, credit). Identify the attempt by our `message_id` when the upstream echoes
    it back, otherwise by `provider_ref` (one of the refs from SendResult)."""

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
