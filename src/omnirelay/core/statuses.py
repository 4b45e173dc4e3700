"""The Messente status and error-code vocabulary, and what each status means for a fallback chain.

Statuses and `err` codes are the exact enums of Messente's Omnichannel spec: the official SDKs refuse to
parse anything else, so every surface and every channel speaks in these terms.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Status(StrEnum):
    ACK = "ACK"
    DELIVRD = "DELIVRD"
    UNDELIV = "UNDELIV"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    ACCEPTD = "ACCEPTD"
    REJECTD = "REJECTD"
    DELETED = "DELETED"
    EXPIRED = "EXPIRED"
    NACK = "NACK"
    SEEN = "SEEN"


class Err(IntEnum):
    """`err` of a delivery result (Messente's ErrorCodeOmnichannelMachine)."""

    NO_ERROR = 0
    DELIVERY_FAILURE = 1
    EXPIRED = 2
    INVALID_NUMBER = 3
    CREDITING = 4
    INVALID_NUMBER_FORMAT = 5
    TOO_MANY_IDENTICAL = 6
    SENDER_NOT_ALLOWED = 7
    OPERATOR_BLACKLISTED = 8
    UNROUTABLE = 9
    SEEN = 10
    TEMPORARY = 999


ERR_TEXT: dict[Err, str] = {
    Err.NO_ERROR: "No error",
    Err.DELIVERY_FAILURE: "Delivery failure",
    Err.EXPIRED: "Sending message expired",
    Err.INVALID_NUMBER: "Invalid number",
    Err.CREDITING: "Error crediting account",
    Err.INVALID_NUMBER_FORMAT: "Invalid number format",
    Err.TOO_MANY_IDENTICAL: "Too many identical messages",
    Err.SENDER_NOT_ALLOWED: "Sender name not allowed",
    Err.OPERATOR_BLACKLISTED: "Operator blacklisted",
    Err.UNROUTABLE: "Unroutable",
    Err.SEEN: "Seen",
    Err.TEMPORARY: "General temporary error",
}

SUCCESS: frozenset[Status] = frozenset({Status.DELIVRD, Status.SEEN})
FAILURE: frozenset[Status] = frozenset(
    {Status.UNDELIV, Status.FAILED, Status.REJECTD, Status.NACK, Status.DELETED, Status.EXPIRED}
)
TERMINAL: frozenset[Status] = SUCCESS | FAILURE


def is_terminal(status: Status | str | None) -> bool:
    return status is not None and Status(status) in TERMINAL


def is_success(status: Status | str | None) -> bool:
    return status is not None and Status(status) in SUCCESS


def error_text(err: int | None) -> str | None:
    """The human-readable `error` that accompanies a non-zero `err`; None means no error."""
    if err is None or err == Err.NO_ERROR:
        return None
    try:
        return ERR_TEXT[Err(err)]
    except ValueError:
        return ERR_TEXT[Err.TEMPORARY]
