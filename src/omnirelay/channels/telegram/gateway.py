"""Telegram verification codes through the Telegram Gateway API (provider "telegram_gateway").

The Gateway reaches any phone number that has Telegram, but carries only a numeric code of 4-8
digits in Telegram's own "Verification Codes" chat, never free text. The code is taken from the
message: a `code` field if the variant has one, else the single run of 4-8 digits in `text`
("Your code is 123456"). Content without exactly one such code, or with media, cannot go this way:
FAILED, err 9 (Unroutable), and the next channel starts at once.

Configuration (TOML):

    [providers.telegram_gateway]
    base_url = "https://gatewayapi.telegram.org"   # default
    access_token = "..."                           # required
    callback_url = "https://gw.example.com/webhooks/telegram_gateway/"
                    # default: <public_url>/webhooks/<provider name>/ when the app's public_url
                    # is set; without either, no delivery reports come and attempts end by validity
    sender_username = "MyChannel"                  # optional: a verified channel of yours
    max_callback_age = 300                         # seconds; older (or future) callbacks refused
    timeout = 15.0                                 # connect_timeout = 5.0, max_concurrency = 16

Send: `POST {base_url}/sendVerificationMessage` with `Authorization: Bearer <token>` and JSON
{phone_number, code, payload = our message_id, callback_url?, ttl?, sender_username?}; `ttl` is
the time left to the attempt's deadline, clamped to the Gateway's 30-3600 s. The provider ref is
the returned request_id.

Route (mounted under /webhooks/<provider name>): `POST /` receives the delivery reports (a
RequestStatus body). Each must carry X-Request-Timestamp and X-Request-Signature = hex
HMAC-SHA256(key = SHA256(access_token) as raw bytes, msg = timestamp + "\\n" + raw body); missing
headers: 401; wrong or stale: 403; nothing recorded. The reference leaves open whether the key is
the raw digest or its hex; the raw digest is used, as in Telegram's identical Login Widget check.

Statuses (delivery_status.status): sent -> ACK; delivered -> DELIVRD err 0; read -> SEEN err 10;
expired -> EXPIRED err 2; revoked -> DELETED err 1.

Submit answers ({"ok": false, "error": "..."}): ACCESS_TOKEN_* or HTTP 401 -> FAILED err 999 with
an error log; BALANCE_* -> FAILED err 4 (crediting); PHONE_NUMBER_INVALID -> REJECTD err 5;
other PHONE_NUMBER_* (not on Telegram, no chat) -> REJECTD err 9; FLOOD_WAIT_<n> or HTTP 429 ->
retry after n (or Retry-After, or 5) seconds; HTTP 5xx or network errors -> retry in 5 s; others
-> REJECTD err 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from omnirelay.channels.base import ChannelSink, OutboundMessage, SendResult, StatusReport
from omnirelay.channels.http_upstream import (
    MAX_WEBHOOK_BODY,
    TRANSIENT_RETRY,
    ConfigTable,
    HttpChannel,
    HttpSettings,
    e164,
    hmac_sha256_hex,
    json_object,
    retry_after_header,
    same_secret,
    utc_from_epoch,
)
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import utcnow

log = logging.getLogger(__name__)

PROVIDER = "telegram_gateway"
CHANNEL = "telegram"
TTL_MIN, TTL_MAX = 30, 3600
CODE = re.compile(r"(?<!\d)\d{4,8}(?!\d)")
FLOOD_WAIT = re.compile(r"^FLOOD_WAIT_(\d+)$")

DELIVERY_STATUS: dict[str, tuple[Status, Err | None]] = {
    "sent": (Status.ACK, None),
    "delivered": (Status.DELIVRD, Err.NO_ERROR),
    "read": (Status.SEEN, Err.SEEN),
    "expired": (Status.EXPIRED, Err.EXPIRED),
    "revoked": (Status.DELETED, Err.DELIVERY_FAILURE),
}


@dataclass(frozen=True)  # no slots: from_mapping reads the class defaults
class TelegramGatewaySettings:
    access_token: str = field(repr=False)
    base_url: str = "https://gatewayapi.telegram.org"
    callback_url: str | None = None
    sender_username: str | None = None
    max_callback_age: float = 300.0
    http: HttpSettings = field(default_factory=HttpSettings)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], name: str = PROVIDER, *, public_url: str = ""
                     ) -> TelegramGatewaySettings:
        table = ConfigTable(name, raw)
        callback = table.optional_string("callback_url")
        if callback is None and "callback_url" not in raw and public_url:
            callback = f"{public_url.rstrip('/')}/webhooks/{name}/"
        settings = cls(
            base_url=table.url("base_url", cls.base_url),
            access_token=table.string("access_token"),
            callback_url=callback,
            sender_username=table.optional_string("sender_username"),
            max_callback_age=table.number("max_callback_age", cls.max_callback_age),
            http=HttpSettings.read(table),
        )
        table.done()
        return settings


def extract_code(content: Mapping[str, Any]) -> str:
    """The 4-8 digit code the message carries. Raises ValueError when there is none, several,
    or media the Gateway cannot send."""
    if any(content.get(k) for k in ("image_url", "document_url", "audio_url")):
        raise ValueError("the Telegram Gateway sends verification codes only, not media")
    explicit = content.get("code")
    if explicit is not None:
        code = str(explicit)
        if CODE.fullmatch(code):
            return code
        raise ValueError("the Telegram Gateway needs a code of 4-8 digits")
    found = CODE.findall(str(content.get("text") or ""))
    if len(found) != 1:
        raise ValueError("the Telegram Gateway sends verification codes only: the text must "
                         "hold exactly one code of 4-8 digits")
    return str(found[0])


def request_ttl(deadline: datetime | None, now: datetime) -> int | None:
    if deadline is None:
        return None
    left = int((deadline - now).total_seconds())
    return max(TTL_MIN, min(TTL_MAX, left))


class TelegramGatewayChannel(HttpChannel[TelegramGatewaySettings]):
    def __init__(self, settings: TelegramGatewaySettings, name: str = PROVIDER) -> None:
        super().__init__(settings, name)
        # The callback key is SHA256(token) as raw bytes (see the module docstring).
        self._callback_key = hashlib.sha256(settings.access_token.encode()).digest()

    def _headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.settings.access_token}"}

    async def start(self, sink: ChannelSink) -> None:
        if self.settings.callback_url is None:
            log.warning("%s: no callback_url and no public_url: Telegram will send no delivery "
                        "reports, attempts end when their validity runs out", self.name)
        await super().start(sink)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._send_one(m) for m in batch)))

    async def _send_one(self, message: OutboundMessage) -> SendResult:
        if self._client is None:
            raise RuntimeError(f"{self.name} is not started")
        try:
            code = extract_code(message.content)
        except ValueError as exc:
            return SendResult(message.message_id, status=Status.FAILED, err=Err.UNROUTABLE,
                              error=str(exc))
        body: dict[str, Any] = {"phone_number": e164(message.to), "code": code,
                                "payload": message.message_id}
        if self.settings.callback_url:
            body["callback_url"] = self.settings.callback_url
        if self.settings.sender_username:
            body["sender_username"] = self.settings.sender_username
        ttl = request_ttl(message.deadline, utcnow())
        if ttl is not None:
            body["ttl"] = ttl
        response = await self._post(message.message_id, "/sendVerificationMessage", body)
        if isinstance(response, SendResult):
            return response
        return self._result(message.message_id, response)

    def _result(self, message_id: str, response: httpx.Response) -> SendResult:
        answer = json_object(response)
        result = answer.get("result")
        if answer.get("ok") is True and isinstance(result, dict) and result.get("request_id"):
            return SendResult(message_id, provider_refs=(str(result["request_id"]),))
        error = str(answer.get("error") or response.reason_phrase or "error")[:200]
        described = f"Telegram Gateway: {error}"
        flood = FLOOD_WAIT.match(error)
        if flood or response.status_code == 429:
            wait = float(flood.group(1)) if flood else retry_after_header(response)
            return SendResult(message_id, retry_after=wait if wait is not None else
                              TRANSIENT_RETRY)
        if response.status_code >= 500:
            return SendResult(message_id, retry_after=TRANSIENT_RETRY)
        if error.startswith("ACCESS_TOKEN") or response.status_code == 401:
            log.error("%s: the Gateway refused the access token (%s); check [providers.%s] "
                      "access_token", self.name, error, self.name)
            return SendResult(message_id, status=Status.FAILED, err=Err.TEMPORARY,
                              error=described)
        if error.startswith("BALANCE"):
            log.error("%s: Gateway balance exhausted (%s)", self.name, error)
            return SendResult(message_id, status=Status.FAILED, err=Err.CREDITING,
                              error=described)
        if error == "PHONE_NUMBER_INVALID":
            return SendResult(message_id, status=Status.REJECTD, err=Err.INVALID_NUMBER_FORMAT,
                              error=described)
        if error.startswith("PHONE_NUMBER"):
            return SendResult(message_id, status=Status.REJECTD, err=Err.UNROUTABLE,
                              error=described)
        return SendResult(message_id, status=Status.REJECTD, err=Err.DELIVERY_FAILURE,
                          error=described)

    # --- delivery reports ---------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [Route("/", self._report, methods=["POST"])]

    def signature_ok(self, timestamp: str, body: bytes, signature: str,
                     now: float | None = None) -> bool:
        try:
            sent_at = int(timestamp)
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - sent_at) > self.settings.max_callback_age:
            return False  # a replayed old report
        expected = hmac_sha256_hex(self._callback_key, timestamp.encode() + b"\n" + body)
        return same_secret(expected, signature)

    async def _report(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return PlainTextResponse("too large", status_code=413)
        timestamp = request.headers.get("x-request-timestamp")
        signature = request.headers.get("x-request-signature")
        if not timestamp or not signature:
            return PlainTextResponse("missing signature", status_code=401)
        if not self.signature_ok(timestamp, body, signature):
            log.warning("%s: report with a wrong or stale signature refused", self.name)
            return PlainTextResponse("bad signature", status_code=403)
        try:
            status = json.loads(body)
        except ValueError:
            return PlainTextResponse("invalid JSON", status_code=400)
        if self._sink is None:
            return PlainTextResponse("not started", status_code=503)
        report = parse_request_status(status)
        if report is not None:
            # Telegram retries a non-200 answer, so answer only once the report is stored.
            await self._sink.report_statuses([report])
        return PlainTextResponse("ok")


def parse_request_status(status: Any) -> StatusReport | None:
    if not isinstance(status, dict):
        return None
    delivery = status.get("delivery_status")
    if not isinstance(delivery, dict) or delivery.get("status") not in DELIVERY_STATUS:
        return None  # e.g. a verification_status-only update
    mapped, err = DELIVERY_STATUS[delivery["status"]]
    payload = status.get("payload")
    request_id = status.get("request_id")
    occurred = utc_from_epoch(delivery.get("updated_at"))
    return StatusReport(
        channel=CHANNEL, status=mapped,
        # payload is our message_id (we set it); the request_id matches otherwise
        message_id=payload if isinstance(payload, str) and payload else None,
        provider_ref=str(request_id) if request_id is not None else None,
        err=int(err) if err is not None else None,
        error="Telegram Gateway: revoked" if mapped == Status.DELETED else None,
        occurred_at=occurred)
