"""Listing messages: the query (filters, PageSize, Page, PageToken) and the page body.

The page body has exactly the meta keys twilio-python's strict parser allows plus one record key,
`messages` (reference §2.2 and key fact 4); `next_page_uri` is relative or null.

Paging is by offset under a snapshot: the first page fixes an upper bound on creation time, and
the PageToken carries it with the next offset, so messages accepted while a client walks the pages
do not shift later pages and repeat records.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from omnirelay.core import validation
from omnirelay.core.omnimessage import parse_phone_number
from omnirelay.core.timefmt import in_range
from omnirelay.core.twilio.dates import date_sent_range
from omnirelay.core.twilio.errors import invalid_parameter

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Offsets stay far inside the databases' 64-bit OFFSET; nobody pages a billion records deep.
MAX_PAGE = 1_000_000
MAX_OFFSET = MAX_PAGE * MAX_PAGE_SIZE
MAX_FILTER_LENGTH = 64  # the longest To or From the store holds
FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class ListQuery:
    to: str | None = None
    from_: str | None = None
    sent_after: datetime | None = None  # inclusive
    sent_before: datetime | None = None  # exclusive, the snapshot bound included
    page_size: int = DEFAULT_PAGE_SIZE
    page: int = 0
    offset: int = 0
    snapshot: datetime = _EPOCH
    token: str | None = None
    filters: tuple[tuple[str, str], ...] = field(default=())  # as given, echoed in the URIs


def page_token(offset: int, snapshot: datetime) -> str:
    micros = (snapshot - _EPOCH) // timedelta(microseconds=1)
    raw = f"{offset}.{micros}".encode()
    return "PA" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_page_token(token: str) -> tuple[int, datetime]:
    """Raises ValueError."""
    if not token.startswith("PA"):
        raise ValueError(token)
    encoded = token[2:]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        offset_text, micros_text = raw.split(".")
        offset, micros = int(offset_text), int(micros_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(token) from None
    if not 0 <= offset <= MAX_OFFSET or micros < 0:
        raise ValueError(token)
    try:
        return offset, in_range(_EPOCH + timedelta(microseconds=micros))
    except OverflowError:
        raise ValueError(token) from None


def _integer(params: dict[str, str], name: str, default: int, minimum: int, maximum: int
             ) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    # The length check first: int() of thousands of digits is slow, and refused above 4300.
    if (not text.isascii() or not text.isdigit() or len(text) > len(str(maximum))
            or int(text) < minimum):
        raise invalid_parameter(f"{name} must be an integer of at least {minimum}, not {text!r}")
    return int(text)


def parse_list_query(pairs: Sequence[tuple[str, str]], now: datetime) -> ListQuery:
    """Raises TwilioError. `now` becomes the snapshot bound of a first page."""
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    # A PageSize above the maximum is served at the maximum, as on Twilio.
    page_size = min(_integer(params, "PageSize", DEFAULT_PAGE_SIZE, 1, 10**9), MAX_PAGE_SIZE)
    page = _integer(params, "Page", 0, 0, MAX_PAGE)
    if page > MAX_PAGE:
        raise invalid_parameter(f"Page must be at most {MAX_PAGE}")
    token = params.get("PageToken") or None
    if token is not None:
        try:
            offset, snapshot = read_page_token(token)
        except ValueError:
            raise invalid_parameter(f"PageToken {token!r} is not one this server issued") from None
    else:
        # Page alone (no token) is Twilio's legacy paging: offset Page * PageSize.
        offset, snapshot = page * page_size, now
    filters = tuple((k, params[k]) for k in FILTERS if params.get(k))
    for key, value in filters:
        control = validation.control_character(value)
        if control is not None or len(value) > MAX_FILTER_LENGTH:
            raise invalid_parameter(f"{key} must be at most {MAX_FILTER_LENGTH} characters "
                                    "without control characters")
    after: datetime | None = None
    before: datetime = snapshot
    for key, value in filters:
        if not key.startswith("DateSent"):
            continue
        try:
            low, high = date_sent_range(key, value)
        except ValueError:
            raise invalid_parameter(f"{key} must be a date (YYYY-MM-DD) or a date-time, "
                                    f"not {value!r}") from None
        if low is not None:
            after = low if after is None else max(after, low)
        if high is not None:
            before = min(before, high)
    return ListQuery(to=_number(params.get("To")), from_=_number(params.get("From")),
                     sent_after=after,
                     sent_before=before, page_size=page_size, page=page, offset=offset,
                     snapshot=snapshot, token=token, filters=filters)


def _number(text: str | None) -> str | None:
    """Stored numbers are E.164; a number written otherwise still finds its messages. Other
    senders (short codes, alphanumeric IDs) are compared as given."""
    if not text:
        return None
    if not text.startswith("+"):
        return text
    try:
        return parse_phone_number(text, "number")
    except validation.RequestError:
        return text


def _uri(base: str, query: ListQuery, page: int, token: str | None) -> str:
    pairs: list[tuple[str, str]] = [*query.filters, ("PageSize", str(query.page_size)),
                                    ("Page", str(page))]
    if token is not None:
        pairs.append(("PageToken", token))
    return base + "?" + urlencode(pairs)


def page_body(base: str, query: ListQuery, messages: list[dict[str, Any]], has_more: bool
              ) -> dict[str, Any]:
    """`base` is the list's path (`/2010-04-01/Accounts/{AC}/Messages.json`)."""
    next_uri = None
    if has_more:
        next_uri = _uri(base, query, query.page + 1,
                        page_token(query.offset + query.page_size, query.snapshot))
    previous_uri = None
    if query.offset > 0:
        previous_uri = _uri(base, query, max(query.page - 1, 0),
                            page_token(max(query.offset - query.page_size, 0), query.snapshot))
    return {
        "end": query.offset + max(len(messages), 1) - 1,
        "first_page_uri": _uri(base, query, 0, None),
        "messages": messages,
        "next_page_uri": next_uri,
        "page": query.page,
        "page_size": query.page_size,
        "previous_page_uri": previous_uri,
        "start": query.offset,
        "uri": _uri(base, query, query.page, query.token),
    }
