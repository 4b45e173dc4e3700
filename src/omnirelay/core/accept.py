"""The accept use case, surface by surface: a validated request becomes the omnimessage to store.

Both surfaces (and verification, which sends its PIN as a Messente omnimessage) build what they
accept here, so the HTTP layer only reads, refuses and answers, and the store and engine tests
build messages the way the API does without importing it. An SMS text is measured once, here:
the part count it gets is what the size limit checks, what the claim charges and what Twilio's
`num_segments` shows; the SMS channels split the text with the same encoder when they send it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from omnirelay.core import validation as v
from omnirelay.core.omnimessage import PRIORITIES, OmnimessageRequest, PlannedAttempt
from omnirelay.core.sms import content_options, count_segments
from omnirelay.core.twilio.create import CreateRequest


class Sender(Protocol):
    """What accepting reads of the account that sends."""

    @property
    def id(self) -> int: ...
    @property
    def default_sender(self) -> str: ...
    @property
    def replacements(self) -> Mapping[str, str] | None: ...
    @property
    def twilio_account_sid(self) -> str: ...


@dataclass(frozen=True, slots=True)
class NewOmnimessage:
    """An omnimessage as the store takes it at accept: its attempts in send order."""

    id: str
    account_id: int
    surface: str
    to: str
    priority: int
    time_to_send: datetime | None
    dlr_url: str | None
    text_store: str
    attempts: tuple[PlannedAttempt, ...]
    extra: dict[str, Any] | None = None


class Limits(Protocol):
    """The engine settings accepting applies (config.EngineSettings)."""

    @property
    def max_sms_parts(self) -> int: ...
    @property
    def default_validity_seconds(self) -> int: ...


def messente_omnimessage(account: Sender, request: OmnimessageRequest, limits: Limits,
                         path: str = "") -> NewOmnimessage:
    """Raises RequestError (source under `path`) for an SMS text over `max_sms_parts` parts or
    one that cannot be encoded."""
    attempts = []
    for seq, variant in enumerate(request.variants):
        content = _with_replacements(variant.channel, variant.content, account.replacements)
        parts = None
        if variant.channel == "sms":
            parts = _sms_parts(content, limits.max_sms_parts,
                               v.join(v.join(v.join(path, "messages"), seq), "text"))
        attempts.append(PlannedAttempt(
            message_id=str(uuid.uuid4()), seq=seq, channel=variant.channel,
            sender=variant.sender or account.default_sender, content=content,
            validity_seconds=variant.validity_seconds or limits.default_validity_seconds,
            parts_count=parts))
    return NewOmnimessage(
        id=str(uuid.uuid4()), account_id=account.id, surface="messente", to=request.to,
        priority=request.priority, time_to_send=request.time_to_send, dlr_url=request.dlr_url,
        text_store=request.text_store, attempts=tuple(attempts))


def twilio_omnimessage(account: Sender, request: CreateRequest) -> NewOmnimessage:
    content: dict[str, Any] = {"text": request.body, "autoconvert": request.autoconvert}
    segments = request.segments
    if request.autoconvert != "off" and account.replacements is not None:
        # SmartEncoded applies the account's table, which can change the segment count.
        content["replacements"] = dict(account.replacements)
        segments = count_segments(request.body, **content_options(content))
    attempt = PlannedAttempt(str(uuid.uuid4()), 0, "sms", request.from_, content,
                             request.validity_seconds, parts_count=segments)
    return NewOmnimessage(
        id=str(uuid.uuid4()), account_id=account.id, surface="twilio", to=request.to,
        priority=PRIORITIES["regular"], time_to_send=request.send_at, dlr_url=None,
        # nostore forgets the body once the message has its outcome.
        text_store="nostore" if request.discard_content else "plaintext",
        attempts=(attempt,),
        extra={
            "from": request.from_,
            "status_callback": request.status_callback,
            # The callbacks are built inside the store's transaction, from stored facts only.
            "account_sid": account.twilio_account_sid,
            "num_segments": segments,
        },
    )


def _with_replacements(channel: str, content: dict[str, Any],
                       table: Mapping[str, str] | None) -> dict[str, Any]:
    """An SMS that converts carries the account's replacement table, so that every later step
    (part count, sending) converts the text the same way."""
    if table is None or channel != "sms" or content.get("autoconvert", "on") == "off":
        return content
    return {**content, "replacements": dict(table)}


def _sms_parts(content: Mapping[str, Any], max_parts: int, source: str) -> int:
    try:
        parts = count_segments(content["text"], **content_options(content))
    except ValueError as exc:
        v.fail(source, f"{source} cannot be encoded as SMS: {exc}")
    if parts > max_parts:
        v.fail(source, f"{source} needs {parts} SMS parts; at most {max_parts} are allowed")
    return parts
