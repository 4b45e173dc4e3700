"""The Message resource: SIDs, URIs, Twilio statuses and error codes derived from the attempt.

A Twilio message is an omnimessage of surface "twilio" with one SMS attempt. Its SID is "SM" plus
the omnimessage UUID's 32 hex digits, so a SID maps to its row with no extra column.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from omnirelay.core.money import CURRENCY, format_amount
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import rfc2822

API_VERSION = "2010-04-01"
PREFIX = f"/{API_VERSION}"
_SID = re.compile(r"^SM[0-9a-fA-F]{32}$")


class TwilioStatus(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"


# Twilio's delivery error codes and titles (reference §3.2, "Delivery errors").
DELIVERY_ERRORS: dict[int, str] = {
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}

# Messente `err` -> Twilio error code, for a failed or undelivered message. DELIVERY_FAILURE and
# EXPIRED depend on the status too (see `delivery_error`).
ERR_CODES: dict[int, int] = {
    Err.INVALID_NUMBER: 30005,
    Err.INVALID_NUMBER_FORMAT: 30005,
    Err.CREDITING: 30002,
    Err.TOO_MANY_IDENTICAL: 30007,
    Err.SENDER_NOT_ALLOWED: 30007,
    Err.OPERATOR_BLACKLISTED: 30004,
    Err.UNROUTABLE: 30006,
    Err.TEMPORARY: 30008,
}

PROGRESS = frozenset({Status.ACK, Status.ACCEPTD})
DELIVERED = frozenset({Status.DELIVRD, Status.SEEN})
FAILED = frozenset({Status.FAILED, Status.REJECTD, Status.NACK, Status.DELETED})


@dataclass(frozen=True, slots=True)
class Outcome:
    status: TwilioStatus
    error_code: int | None = None

    @property
    def error_message(self) -> str | None:
        return None if self.error_code is None else DELIVERY_ERRORS[self.error_code]


def message_sid(omnimessage_id: str) -> str:
    return "SM" + uuid.UUID(omnimessage_id).hex


def omnimessage_id(sid: str) -> str | None:
    """The omnimessage id behind a Message SID; None when it is not one of ours."""
    if not _SID.fullmatch(sid):
        return None
    return str(uuid.UUID(hex=sid[2:]))


def messages_uri(account_sid: str) -> str:
    return f"{PREFIX}/Accounts/{account_sid}/Messages.json"


def message_uri(account_sid: str, sid: str) -> str:
    return f"{PREFIX}/Accounts/{account_sid}/Messages/{sid}.json"


def delivery_error(status: Status, err: int | None, was_sent: bool) -> int:
    if status == Status.EXPIRED:
        # Expired before the upstream took it: Twilio's ValidityPeriod expiry in its queue.
        # Expired after: no receipt in time, the handset never took it.
        return 30003 if was_sent else 30001
    if err in ERR_CODES:
        return ERR_CODES[err]
    return 30003 if status == Status.UNDELIV else 30008


def report_outcome(status: Status | str, err: int | None, was_sent: bool) -> Outcome | None:
    """The Twilio status a recorded Messente status means; None when it changes nothing Twilio
    shows (UNKNOWN)."""
    status = Status(status)
    if status in DELIVERED:
        return Outcome(TwilioStatus.DELIVERED)
    if status in PROGRESS:
        return Outcome(TwilioStatus.SENT)
    if status == Status.UNDELIV or (status == Status.EXPIRED and was_sent):
        return Outcome(TwilioStatus.UNDELIVERED, delivery_error(status, err, was_sent))
    if status in FAILED or status == Status.EXPIRED:
        return Outcome(TwilioStatus.FAILED, delivery_error(status, err, was_sent))
    return None


def message_status(state: str, status: str | None, err: int | None, *, was_sent: bool,
                   send_at: datetime | None, now: datetime) -> Outcome:
    """The Twilio status of a message from its attempt's lifecycle `state` and last `status`."""
    if state == "canceled":
        return Outcome(TwilioStatus.CANCELED)
    if status is not None:
        outcome = report_outcome(status, err, was_sent)
        if outcome is not None:
            return outcome
    if state in ("due", "waiting"):
        if send_at is not None and send_at > now:
            return Outcome(TwilioStatus.SCHEDULED)
        return Outcome(TwilioStatus.QUEUED)
    if state == "sending":
        return Outcome(TwilioStatus.SENDING)
    if state in ("sent", "done"):
        return Outcome(TwilioStatus.SENT)
    return Outcome(TwilioStatus.FAILED, 30008)  # skipped: cannot happen to a lone attempt


class AttemptFacts(Protocol):
    """What the resource needs of the attempt (store.omnimessages.AttemptView has it)."""

    @property
    def sender(self) -> str: ...
    @property
    def content(self) -> dict[str, Any] | None: ...
    @property
    def state(self) -> str: ...
    @property
    def status(self) -> str | None: ...
    @property
    def err(self) -> int | None: ...
    @property
    def parts_count(self) -> int | None: ...
    @property
    def sent_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def part_price_micros(self) -> int | None: ...
    @property
    def charged_parts(self) -> int | None: ...


class MessageFacts(Protocol):
    """What the resource needs of the omnimessage (store.omnimessages.OmnimessageView has it)."""

    @property
    def id(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def time_to_send(self) -> datetime | None: ...
    @property
    def extra(self) -> dict[str, Any] | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def attempts(self) -> Sequence[AttemptFacts]: ...


def twilio_price(part_price_micros: int | None, parts: int | None) -> str | None:
    """What a message cost, negative as Twilio writes it (a cost to the account); null until
    it was charged."""
    if part_price_micros is None or parts is None:
        return None
    total = part_price_micros * parts
    return "-" + format_amount(total) if total else format_amount(0)


def message_resource(message: MessageFacts, account_sid: str, now: datetime) -> dict[str, Any]:
    """The Message resource, every field of Twilio's schema, in Twilio's (alphabetical) order."""
    attempt = message.attempts[0]
    extra: Mapping[str, Any] = message.extra or {}
    outcome = message_status(attempt.state, attempt.status, attempt.err,
                             was_sent=attempt.sent_at is not None,
                             send_at=message.time_to_send, now=now)
    sid = message_sid(message.id)
    uri = message_uri(account_sid, sid)
    # Counted at create by the encoder the SMS channels use; a channel's own parts_count is the
    # fallback only, since the sandbox reports 1 part whatever the length.
    segments = extra.get("num_segments") or attempt.parts_count or 0
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        # Empty once redacted, or once sent with ContentRetention=discard, as on Twilio.
        "body": (attempt.content or {}).get("text", ""),
        "date_created": rfc2822(message.created_at),
        "date_sent": rfc2822(attempt.sent_at),
        "date_updated": rfc2822(max(message.updated_at, attempt.updated_at)),
        "direction": "outbound-api",
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "from": extra.get("from", attempt.sender),
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": str(segments),
        # Twilio writes what a message cost as a negative amount; null until it was charged
        "price": twilio_price(attempt.part_price_micros, attempt.charged_parts),
        "price_unit": CURRENCY,
        "sid": sid,
        "status": outcome.status.value,
        "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
        "to": message.to,
        "uri": uri,
    }
