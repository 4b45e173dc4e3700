"""Webhook bodies for the Messente surface: delivery reports and inbound messages.

Pure functions from stored facts to bytes; the webhook sender signs the bytes it finally sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from omnirelay.core.pricing import price_info
from omnirelay.core.timefmt import messente_inbound_time, messente_timestamp


@dataclass(frozen=True, slots=True)
class ReportContext:
    """Everything a surface needs to describe one event of one attempt."""

    event: str  # "status" (a status was recorded) or "sent" (the upstream accepted it)
    surface: str
    account_id: int
    omnimessage_id: str
    message_id: str
    channel: str
    to: str
    sender: str
    status: str | None
    err: int | None
    error: str | None
    parts_count: int | None
    occurred_at: datetime
    dlr_url: str | None  # the request's, else the account default
    extra: dict[str, Any] | None
    content: dict[str, Any] | None
    part_price_micros: int | None = None  # what submitting it was charged (store.pricing)
    charged_parts: int | None = None


@dataclass(frozen=True, slots=True)
class WebhookDraft:
    url: str
    kind: str  # dlr, inbound, twilio
    body: bytes


def messente_dlr(ctx: ReportContext) -> list[WebhookDraft]:
    if ctx.event != "status" or not ctx.dlr_url:
        return []
    body = {
        "status": ctx.status,
        "sender": ctx.sender,
        "err": ctx.err,
        "message_id": ctx.message_id,
        "to": ctx.to,
        "channel": ctx.channel,
        "error": ctx.error,
        "omnimessage_id": ctx.omnimessage_id,
        "timestamp": messente_timestamp(ctx.occurred_at),
        # what it was charged at submit; zeros for an attempt never charged
        "price_info": price_info(ctx.part_price_micros, ctx.charged_parts, ctx.parts_count),
    }
    return [WebhookDraft(ctx.dlr_url, "dlr", orjson.dumps(body))]


def messente_inbound(
    *, msg_id: str, channel: str, recipient: str, sender: str, text: str, received_at: datetime
) -> bytes:
    return orjson.dumps({
        "msg_id": msg_id,
        "sub_msg_id": msg_id,
        "channel": channel,
        "recipient": recipient,
        "time": messente_inbound_time(received_at),
        "text": text,
        "sender": sender,
    })
