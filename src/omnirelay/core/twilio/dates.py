"""Reading the date-times Twilio clients send: `SendAt` and the `DateSent` list filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from omnirelay.core.timefmt import in_range, parse_iso8601

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)  # turns an inclusive upper bound into the store's exclusive one


def parse_moment(text: str) -> datetime:
    """ISO 8601 (`Z`, `±hh:mm`, fractions; no zone means UTC) or RFC 2822, as naive UTC within
    timefmt's [EARLIEST, LATEST). Raises ValueError."""
    text = text.strip()
    try:
        return parse_iso8601(text)
    except ValueError:
        pass
    try:
        parsed = parsedate_to_datetime(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ValueError(f"{text!r} is not a date-time") from None
    return in_range(parsed)


def date_sent_range(key: str, text: str) -> tuple[datetime | None, datetime | None]:
    """The [from, until) range one `DateSent` filter selects.

    A bare date (`2024-01-31`) works by whole UTC days: `DateSent` is that day, `DateSent<` on or
    before it, `DateSent>` on or after it. A date-time is an instant, both bounds inclusive; but
    `DateSent=` with a date-time still selects its whole day, since the SDK sends dates as
    `2024-01-31T00:00:00Z`. Raises ValueError."""
    moment = parse_moment(text)
    date_only = bool(_DATE_ONLY.match(text.strip()))
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if key == "DateSent":
        return day, day + _DAY
    if key == "DateSent<":
        return None, (day + _DAY) if date_only else moment + _TICK
    if key == "DateSent>":
        return (day if date_only else moment), None
    raise ValueError(f"unknown date filter {key!r}")
