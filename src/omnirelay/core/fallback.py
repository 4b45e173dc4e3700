"""The fallback rule: what one status report does to an attempt and to its chain.

Pure: given the attempt as stored and the reported status, say what to store and what comes next.
The store applies the answer inside the transaction that read the attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from omnirelay.core.schedule import deadline
from omnirelay.core.statuses import FAILURE, SUCCESS, Err, Status, error_text


class Next(Enum):
    NOTHING = "nothing"  # progress, or a late report on a finished attempt
    START_NEXT = "start_next"  # this attempt failed: the next variant starts now
    END_SUCCESS = "end_success"  # delivered: later variants are never sent
    END_FAILURE = "end_failure"  # failed and no variant is left (decided by the store)


@dataclass(frozen=True, slots=True)
class Outcome:
    record: bool  # store the status and report it to the customer
    status: Status
    err: int | None
    error: str | None
    finishes_attempt: bool
    next: Next


ACTIVE_STATES = frozenset({"due", "sending", "sent"})


def apply_status(
    state: str, current: Status | None, reported: Status, err: int | None, error: str | None
) -> Outcome:
    """`state` is the attempt's lifecycle state (waiting, due, sending, sent, done, skipped,
    canceled); `current` its last recorded status."""
    if err is None:
        err = Err.NO_ERROR if reported not in FAILURE else Err.DELIVERY_FAILURE
        if reported == Status.EXPIRED:
            err = Err.EXPIRED
        if reported == Status.SEEN:
            err = Err.SEEN
    error = error if error is not None else error_text(err)
    if state in ACTIVE_STATES:
        if reported in SUCCESS:
            return Outcome(True, reported, err, error, True, Next.END_SUCCESS)
        if reported in FAILURE:
            return Outcome(True, reported, err, error, True, Next.START_NEXT)
        if reported == current:
            return Outcome(False, reported, err, error, False, Next.NOTHING)
        return Outcome(True, reported, err, error, False, Next.NOTHING)
    if state == "done":
        # A finished attempt can still move from delivered to seen, and a receipt that arrives
        # after expiry tells the truth about the channel; neither changes the chain any more.
        if reported == current:
            return Outcome(False, reported, err, error, False, Next.NOTHING)
        if current == Status.DELIVRD and reported == Status.SEEN:
            return Outcome(True, reported, err, error, False, Next.NOTHING)
        if current == Status.EXPIRED and reported in SUCCESS:
            return Outcome(True, reported, err, error, False, Next.NOTHING)
        return Outcome(False, reported, err, error, False, Next.NOTHING)
    return Outcome(False, reported, err, error, False, Next.NOTHING)


def combine_parts(part_statuses: list[Status | None]) -> Status | None:
    """The status of a multi-part message from its parts': delivered when every part is, failed
    (with the first failure) as soon as any part has failed, otherwise no outcome yet."""
    for status in part_statuses:
        if status is not None and status in FAILURE:
            return status
    if part_statuses and all(s is not None and s in SUCCESS for s in part_statuses):
        return Status.SEEN if all(s == Status.SEEN for s in part_statuses) else Status.DELIVRD
    return None


def next_variant(waiting: Iterable[tuple[str, int, int]], failed_seq: int, now: datetime
                 ) -> tuple[str, datetime] | None:
    """The variant that starts when the one at `failed_seq` fails, and its deadline: the first
    later variant still waiting, given as (attempt id, seq, validity seconds) in send order.
    None ends the chain."""
    for attempt_id, seq, validity_seconds in waiting:
        if seq > failed_seq:
            return attempt_id, deadline(now, validity_seconds)
    return None
