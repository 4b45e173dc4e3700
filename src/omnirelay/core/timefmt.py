"""Time: parsing what clients send and formatting what each wire format expects.

Internally every time is a naive datetime in UTC, which both SQLite and PostgreSQL store and
compare identically.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime

# Every date-time a client sends lies in [EARLIEST, LATEST): far enough from datetime's limits
# that adding a validity or a day never overflows, and documented in the README.
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(3000, 1, 1)

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_iso8601(text: str) -> datetime:
    """Parse the ISO-8601 forms Messente documents: with or without seconds, fractions and a zone
    (`Z`, `+hh:mm`, `+hhmm`, `+hh`); no zone means UTC. Returns naive UTC within
    [EARLIEST, LATEST). Raises ValueError."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an ISO-8601 date-time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    normalised = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if fraction:
        normalised += "." + fraction[:6].ljust(6, "0")
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        normalised += zone[0] + digits[:2] + ":" + (digits[2:4] or "00")
    else:
        normalised += "+00:00"
    try:
        parsed = datetime.fromisoformat(normalised).astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # year 1 or 9999 moved across midnight by its zone
        raise ValueError(f"{text!r} is out of range") from None
    return in_range(parsed)


def in_range(moment: datetime) -> datetime:
    """`moment` (naive UTC) if within [EARLIEST, LATEST). Raises ValueError."""
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"{moment.isoformat()} is outside the years "
                         f"{EARLIEST.year}-{LATEST.year - 1}")
    return moment


def messente_timestamp(moment: datetime) -> str:
    """Messente's report timestamp: microseconds, no zone (UTC), e.g. 2020-02-04T08:09:42.389630."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def messente_inbound_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date format, e.g. 'Wed, 18 Aug 2010 20:01:40 +0000'."""
    if moment is None:
        return None
    return format_datetime(moment.replace(tzinfo=UTC))
