"""Which part receipts decide the status of a multi-part SMS.

SMSCs send one receipt per part as a rule, but some aggregators send one for the whole
concatenated message, on its first or its last part only; a connector says which (`multipart_receipts`):

    every  every part must report: delivered when all are, failed as soon as one fails (the default)
    any    the first receipt for any part speaks for the message
    first  only the first part's receipt decides; the others are recorded on their part only
    last   only the last part's receipt decides
"""

from __future__ import annotations

from omnirelay.core.fallback import combine_parts
from omnirelay.core.statuses import Status

RULES = ("every", "any", "first", "last")


def decides(rule: str, part: int, total: int) -> bool:
    """Whether a receipt for `part` (0-based, of `total`) may decide the message alone."""
    if rule == "first":
        return part == 0
    if rule == "last":
        return part == total - 1
    return rule == "any"


def message_status(rule: str, part: int, reported: Status,
                   part_statuses: list[Status | None]) -> Status | None:
    """The message's status after `reported` arrived for `part`; None: no outcome yet."""
    if rule == "every" or rule not in RULES:
        return combine_parts(part_statuses)
    return reported if decides(rule, part, len(part_statuses)) else None
