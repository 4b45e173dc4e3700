"""When attempts become due and when they expire: the scheduling policy the store applies.

An omnimessage's first attempt is due at accept, or at `time_to_send` when that is ahead; each
attempt then has its variant's validity to reach a final status. A later variant is not
scheduled at accept: it starts, with its own validity, when the one before it fails
(core.fallback.next_variant).
"""

from __future__ import annotations

from datetime import datetime, timedelta


def first_due(time_to_send: datetime | None, now: datetime) -> datetime:
    """When the first attempt becomes due: at once, or at its scheduled time if that is ahead."""
    return time_to_send if time_to_send is not None and time_to_send > now else now


def deadline(start: datetime, validity_seconds: int) -> datetime:
    """When an attempt started at `start` expires if no final status has come."""
    return start + timedelta(seconds=validity_seconds)
