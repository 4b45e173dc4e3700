"""Looking back: the filters of the history listings, and their opaque, signed paging cursors.

A page is a slice of one account's rows in (time, id) order, newest first. The cursor is the
position after the page's last row, so rows that arrive while a client pages (they are newer)
neither shift nor repeat what it reads next. Cursors are signed with a key derived from the
server's secret: a client cannot forge a position, and an edited cursor answers 400 rather than
some arbitrary page. A cursor only holds a position; every query is scoped to the caller's
account, so another account's cursor shows nothing of its owner's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson

from omnirelay.core import validation as v
from omnirelay.core.base64url import b64url_decode, b64url_encode
from omnirelay.core.omnimessage import parse_phone_number
from omnirelay.core.statuses import Status
from omnirelay.core.timefmt import parse_iso8601

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
CHANNELS = ("sms", "viber", "whatsapp", "telegram", "rcs")
SURFACES = ("messente", "twilio")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the last row's time and id."""

    at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class MessageFilter:
    to: str | None = None
    channel: str | None = None
    status: str | None = None
    surface: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None


@dataclass(frozen=True, slots=True)
class InboundFilter:
    sender: str | None = None
    recipient: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None


WEBHOOK_STATES = {"pending": "pending", "delivered": "done", "dead": "dead"}  # shown -> stored
MAX_REDELIVER = 1000


@dataclass(frozen=True, slots=True)
class WebhookFilter:
    state: str | None = None  # as stored: pending, done, dead
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None


@dataclass(frozen=True, slots=True)
class Redelivery:
    """Which finished callbacks go back in the queue: oldest first, at most `limit`."""

    states: tuple[str, ...]  # as stored: done and/or dead
    since: datetime | None
    until: datetime | None
    limit: int


class Cursors:
    def __init__(self, server_key: str, kind: str) -> None:
        # One key per listing, so a cursor of one listing is refused by the other.
        self._key = hashlib.sha256(f"omnirelay-cursor-v1:{kind}:{server_key}".encode()).digest()

    def encode(self, position: Position) -> str:
        payload = orjson.dumps([position.at.isoformat(), position.id])
        return b64url_encode(payload) + "." + b64url_encode(self._mac(payload))

    def decode(self, cursor: str, source: str = "next") -> Position:
        payload_part, _, mac_part = cursor.partition(".")
        try:
            payload = b64url_decode(payload_part)
            good = hmac.compare_digest(b64url_decode(mac_part), self._mac(payload))
        except ValueError:
            good = False
        if not good:
            v.fail(source, f"{source} is not a cursor this server gave out")
        at, ident = orjson.loads(payload)
        return Position(datetime.fromisoformat(at), ident)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]


def parse_message_filter(params: Mapping[str, str], cursors: Cursors) -> MessageFilter:
    known = {"to", "channel", "status", "surface", "since", "until", "limit", "next"}
    _refuse_unknown(params, known)
    since, until = _window(params)
    return MessageFilter(
        to=_phone(params, "to"),
        channel=_choice(params, "channel", CHANNELS),
        status=_choice(params, "status", [s.value for s in Status]),
        surface=_choice(params, "surface", SURFACES),
        since=since, until=until, limit=_limit(params),
        after=cursors.decode(params["next"]) if params.get("next") else None,
    )


def parse_inbound_filter(params: Mapping[str, str], cursors: Cursors) -> InboundFilter:
    _refuse_unknown(params, {"from", "to", "since", "until", "limit", "next"})
    since, until = _window(params)
    return InboundFilter(
        sender=_address(params, "from"), recipient=_address(params, "to"),
        since=since, until=until, limit=_limit(params),
        after=cursors.decode(params["next"]) if params.get("next") else None,
    )


def parse_webhook_filter(params: Mapping[str, str], cursors: Cursors) -> WebhookFilter:
    _refuse_unknown(params, {"state", "since", "until", "limit", "next"})
    since, until = _window(params)
    state = _choice(params, "state", tuple(WEBHOOK_STATES))
    return WebhookFilter(
        state=WEBHOOK_STATES[state] if state else None, since=since, until=until,
        limit=_limit(params),
        after=cursors.decode(params["next"]) if params.get("next") else None)


def parse_redelivery(body: object) -> Redelivery:
    """`{"state": "dead" | "delivered", "since", "until", "limit"}`, every field optional: by
    default the dead callbacks, up to 100."""
    data = v.fields(v.obj(body if body is not None else {}, ""), "",
                    ("state", "since", "until", "limit"))
    state = v.one_of(data["state"], "state", ("dead", "delivered")) if "state" in data else "dead"
    times: dict[str, str] = {name: v.string(data[name], name, min_length=1, max_length=64)
             for name in ("since", "until") if name in data}
    since, until = _window(times)
    limit = v.integer(data["limit"], "limit", minimum=1, maximum=MAX_REDELIVER) \
        if "limit" in data else 100
    return Redelivery((WEBHOOK_STATES[state],), since, until, limit)


def _refuse_unknown(params: Mapping[str, str], known: set[str]) -> None:
    for name in params:
        if name not in known:
            v.fail(name, f"unknown filter {name!r}; known: {', '.join(sorted(known))}")


def _phone(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    return None if value is None else parse_phone_number(value, name)


def _address(params: Mapping[str, str], name: str) -> str | None:
    """Inbound parties are phone numbers, short codes or chat ids: a number is matched on its
    E.164 form, anything else as given."""
    value = params.get(name)
    if value is None:
        return None
    _plain_text(value, name)
    compact = value.replace(" ", "")
    if compact.startswith("+") or (compact.isdigit() and len(compact) > 8):
        return parse_phone_number("+" + compact.lstrip("+"), name)
    return value


def _choice(params: Mapping[str, str], name: str, choices: list[str] | tuple[str, ...]
            ) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    return v.one_of(value, name, choices)


def _window(params: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    since, until = _moment(params, "since"), _moment(params, "until")
    if since is not None and until is not None and since > until:
        v.fail("since", "since is later than until")
    return since, until


def _moment(params: Mapping[str, str], name: str) -> datetime | None:
    value = params.get(name)
    if value is None:
        return None
    _plain_text(value, name)
    try:
        return parse_iso8601(value)
    except (ValueError, OverflowError):
        v.fail(name, f"{name} must be an ISO 8601 date-time, e.g. 2026-12-01T09:30:00Z")


def _limit(params: Mapping[str, str]) -> int:
    value = params.get("limit")
    if value is None:
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        v.fail("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _plain_text(value: str, name: str) -> None:
    if len(value) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        v.fail(name, f"{name} holds control characters or is too long")
