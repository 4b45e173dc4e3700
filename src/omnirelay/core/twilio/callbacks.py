"""Status callbacks: the form Twilio POSTs to a message's StatusCallback, and its signature.

A callback goes out when the upstream takes the message (`sent`) and when it ends (`delivered`,
`undelivered`, `failed`); never for the initial status, as on Twilio. Delivery is at least once:
the webhook sender retries, and a channel that reports ACK after accepting can cause a second
`sent`; receivers de-duplicate by MessageSid + MessageStatus or by I-Twilio-Idempotency-Token,
which is the same for every try of one callback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterable
from typing import Protocol
from urllib.parse import parse_qsl, urlencode

from omnirelay.core.reports import ReportContext, WebhookDraft
from omnirelay.core.statuses import Status
from omnirelay.core.twilio.resource import (
    API_VERSION,
    Outcome,
    TwilioStatus,
    message_sid,
    report_outcome,
)

KIND = "twilio"
_RECEIPTS = frozenset({Status.DELIVRD, Status.SEEN, Status.UNDELIV})


class HasAuthToken(Protocol):
    @property
    def twilio_auth_token(self) -> str: ...


def status_callbacks(ctx: ReportContext) -> list[WebhookDraft]:
    """The report builder of the "twilio" surface. `extra` holds what the create request said:
    status_callback, from, account_sid."""
    extra = ctx.extra or {}
    url = extra.get("status_callback")
    if not url:
        return []
    if ctx.event == "sent":
        outcome: Outcome | None = Outcome(TwilioStatus.SENT)
    elif ctx.status is None:
        return []
    else:
        # parts_count is recorded when the upstream accepts an attempt: it tells an expiry in
        # our queue (failed, 30001) from one awaiting the receipt (undelivered, 30003).
        outcome = report_outcome(ctx.status, ctx.err, was_sent=ctx.parts_count is not None)
    if outcome is None:
        return []
    sid = message_sid(ctx.omnimessage_id)
    params: list[tuple[str, str]] = []
    if ctx.status is not None and Status(ctx.status) in _RECEIPTS:
        params.append(("RawDlrDoneDate", ctx.occurred_at.strftime("%y%m%d%H%M")))
    if outcome.error_code is not None:
        params.append(("ErrorCode", str(outcome.error_code)))
    params += [
        ("SmsSid", sid),
        ("SmsStatus", outcome.status.value),
        ("MessageStatus", outcome.status.value),
        ("To", ctx.to),
        ("MessageSid", sid),
        ("AccountSid", str(extra.get("account_sid", ""))),
        ("From", str(extra.get("from", ctx.sender))),
        ("ApiVersion", API_VERSION),
    ]
    return [WebhookDraft(url, KIND, urlencode(params).encode())]


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 over the URL exactly as configured, then each
    parameter name followed by its value, names sorted, a name's distinct values sorted (as
    twilio-python's RequestValidator computes it)."""
    by_name: dict[str, set[str]] = {}
    for name, value in params:
        by_name.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(by_name)
                         for value in sorted(by_name[name]))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def sign_status_callback(account: HasAuthToken, url: str, body: bytes) -> dict[str, str]:
    """The signer for kind "twilio": headers for POSTing `body` to `url`."""
    params = parse_qsl(body.decode(), keep_blank_values=True)
    # Same for every try of one callback (same URL and body), distinct across events.
    token = uuid.UUID(bytes=hashlib.sha256(url.encode() + b"\n" + body).digest()[:16])
    return {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Twilio-Signature": twilio_signature(account.twilio_auth_token, url, params),
        "I-Twilio-Idempotency-Token": str(token),
    }
