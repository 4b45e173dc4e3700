"""WhatsApp through Meta's WhatsApp Cloud API (provider "whatsapp_cloud").

Send: `POST {base_url}/{api_version}/{phone_number_id}/messages` with a Bearer token; the phone
number id is the one configured for the message's sender. Our `message_id` travels in
`biz_opaque_callback_data`, which Meta echoes in status webhooks; the returned wamid is the
provider ref as well, for statuses that lack the echo.

Configuration (TOML):

    [providers.whatsapp_cloud]
    base_url = "https://graph.facebook.com"   # default
    api_version = "v21.0"                     # default; "21.0" is accepted too
    access_token = "..."                      # required: system-user or app token
    app_secret = "..."                        # required: checks X-Hub-Signature-256
    verify_token = "..."                      # required: the GET handshake's hub.verify_token
    senders = { "+37255550000" = "1122334455667" }  # sender -> phone-number id, at least one
    default_sender = "+37255550000"           # required with several senders
    timeout = 15.0                            # seconds per request; connect_timeout = 5.0
    max_concurrency = 16                      # parallel requests per batch
    wabas = { "102290129340398" = ["acme"] }  # WABA id -> accounts that manage its templates
    template_cache_seconds = 300.0            # how long a WABA's template list counts as known

Webhook routes (mounted under /webhooks/<provider name>): `GET /` is Meta's subscribe
handshake, `POST /` receives status and message notifications.

Statuses (webhook `statuses[].status`):

    sent      -> ACK      (progress: Meta has it, not yet the phone)
    delivered -> DELIVRD  err 0
    read      -> SEEN     err 10   (Meta skips "delivered" when both happen together)
    played    -> SEEN     err 10   (a voice message was played: it was read)
    failed    -> FAILED   err from FAILURE_ERR below (e.g. 131026 not on WhatsApp -> err 3)

Submit-time answers: 2xx -> accepted, ref = wamid; throttling (HTTP 429, codes in THROTTLED,
`is_transient`, HTTP 5xx, network errors) -> retry after a back-off, nothing was sent; auth
failures -> FAILED err 999 and an error log; any other refusal -> REJECTD with the err of
FAILURE_ERR (default 1), so the next channel starts at once.

Cloud API has no per-message expiry: the engine's validity timer ends an attempt that is never
delivered; a late delivery can still reach the phone afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from omnirelay.channels.base import (
    Channel,
    InboundMessage,
    OutboundMessage,
    SendResult,
    StatusReport,
)
from omnirelay.channels.http_upstream import (
    MAX_WEBHOOK_BODY,
    TRANSIENT_RETRY,
    ConfigTable,
    HttpChannel,
    HttpSettings,
    ProviderFactory,
    SenderTable,
    create_provider,
    e164,
    hmac_sha256_hex,
    json_object,
    phone_digits,
    retry_after_header,
    same_secret,
    utc_from_epoch,
)
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import utcnow
from omnirelay.errors import ConfigError

log = logging.getLogger(__name__)

PROVIDER = "whatsapp_cloud"
CHANNEL = "whatsapp"

# Graph error code -> seconds to wait before the next try (throttling and temporary outages)
# when the answer carries no Retry-After. Nothing was sent, so a retry cannot duplicate.
THROTTLED: dict[int, float] = {
    4: 60.0,  # application request limit
    80007: 60.0,  # WABA rate limit
    130429: 1.0,  # throughput reached: per-second limit of the phone number
    131048: 60.0,  # spam rate limit
    131056: 6.0,  # pair rate limit: about one message per 6 s to the same user
    131064: 60.0,
    131016: 5.0,  # service unavailable
    131057: 60.0,  # business account in maintenance
    1: 5.0,  # unknown API error, usually transient
    2: 5.0,  # API service temporarily unavailable
}
AUTH_CODES = frozenset({0, 3, 10, 190})  # plus 200-299: permissions

# Graph/Cloud API error code -> Messente err, for failed statuses and submit-time refusals.
FAILURE_ERR: dict[int, Err] = {
    131026: Err.INVALID_NUMBER,  # not a WhatsApp number, old app, terms not accepted
    131021: Err.INVALID_NUMBER,  # recipient is the sender
    131030: Err.UNROUTABLE,  # test number: recipient not in the allowed list
    130497: Err.UNROUTABLE,  # business may not message users in that country
    131045: Err.SENDER_NOT_ALLOWED,  # phone number not registered / certificate
    131031: Err.SENDER_NOT_ALLOWED,  # business account locked
    368: Err.SENDER_NOT_ALLOWED,  # blocked for policy violations
    131042: Err.CREDITING,  # payment problem on the business account
    131050: Err.OPERATOR_BLACKLISTED,  # user stopped marketing messages from the business
    # temporary conditions that ended a message already accepted
    130429: Err.TEMPORARY,
    131048: Err.TEMPORARY,
    131056: Err.TEMPORARY,
    131000: Err.TEMPORARY,
    131016: Err.TEMPORARY,
    131057: Err.TEMPORARY,
    135000: Err.TEMPORARY,
}
# Everything else (131047 outside the 24 h window, 131049, 131051, 131052/131053 media,
# 1320xx template problems, 130472 experiment, ...) is a plain delivery failure.
DEFAULT_FAILURE_ERR = Err.DELIVERY_FAILURE

WEBHOOK_STATUS: dict[str, tuple[Status, Err | None]] = {
    "sent": (Status.ACK, None),
    "delivered": (Status.DELIVRD, Err.NO_ERROR),
    "read": (Status.SEEN, Err.SEEN),
    "played": (Status.SEEN, Err.SEEN),
}

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
# Fields Meta takes per media type; Messente also sends `mime_type` (and `animated` on stickers),
# which the Cloud API refuses on send.
MEDIA_FIELDS: dict[str, tuple[str, ...]] = {
    "image": ("id", "link", "caption"),
    "video": ("id", "link", "caption"),
    "audio": ("id", "link"),
    "document": ("id", "link", "caption", "filename"),
    "sticker": ("id", "link"),
}


def failure_err(code: int | None) -> Err:
    return FAILURE_ERR.get(code, DEFAULT_FAILURE_ERR) if code is not None else DEFAULT_FAILURE_ERR


def is_auth_error(code: int | None, http_status: int) -> bool:
    return http_status == 401 or code in AUTH_CODES or (code is not None and 200 <= code <= 299)


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)  # no slots: from_mapping reads the class defaults
class WhatsAppSettings:
    access_token: str = field(repr=False)
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    senders: SenderTable[str]
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"
    http: HttpSettings = field(default_factory=HttpSettings)
    # WABA id -> the names of the accounts that may manage its templates and send with them
    # (the WhatsApp Templates API, omnirelay.whatsapp_templates); none by default.
    wabas: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    template_cache_seconds: float = 300.0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], name: str = PROVIDER) -> WhatsAppSettings:
        table = ConfigTable(name, raw)
        version = table.string("api_version", cls.api_version)
        if not version.startswith("v"):
            version = "v" + version
        if not version[1:].replace(".", "").isdigit():
            raise ConfigError(f"{table.where} api_version must look like v21.0, not {version!r}")

        def phone_number_id(sender: str, value: Any) -> str:
            if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
                raise ConfigError(f"{table.where} senders.{sender!r} must be the phone-number id "
                                  f"(a string of digits)")
            return str(value)

        settings = cls(
            base_url=table.url("base_url", cls.base_url),
            api_version=version,
            access_token=table.string("access_token"),
            app_secret=table.string("app_secret"),
            verify_token=table.string("verify_token"),
            senders=SenderTable.read(table, phone_number_id),
            http=HttpSettings.read(table),
            wabas=_wabas(table),
            template_cache_seconds=table.number("template_cache_seconds",
                                                cls.template_cache_seconds),
        )
        table.done()
        return settings


def _wabas(table: ConfigTable) -> dict[str, tuple[str, ...]]:
    wabas: dict[str, tuple[str, ...]] = {}
    for waba_id, names in table.table("wabas").items():
        if not str(waba_id).isdigit():
            raise ConfigError(f"{table.where} wabas: {waba_id!r} is not a WABA id (digits)")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{table.where} wabas.{waba_id} must be a list of account names")
        wabas[str(waba_id)] = tuple(names)
    return wabas


# --- request mapping ------------------------------------------------------------------------------


def _without_none(value: Any) -> Any:
    """Drop null fields anywhere: Meta refuses explicit nulls where it expects a value."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def _media(kind: str, media: Mapping[str, Any]) -> dict[str, Any]:
    media = dict(media)
    if "file_name" in media and "filename" not in media:
        # Messente's WhatsAppDocument calls it file_name; the Cloud API calls it filename.
        media["filename"] = media.pop("file_name")
    return {k: media[k] for k in MEDIA_FIELDS[kind] if media.get(k) is not None}


def _parameter(parameter: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(parameter)
    for kind in ("image", "video", "document"):
        if isinstance(out.get(kind), Mapping):
            out[kind] = _media(kind, out[kind])
    currency = out.get("currency")
    if isinstance(currency, Mapping) and isinstance(currency.get("amount_1000"), str):
        # Messente's spec types amount_1000 as a string; the Cloud API wants an integer.
        with contextlib.suppress(ValueError):  # not a number: let Meta say what is wrong
            out["currency"] = {**currency, "amount_1000": int(currency["amount_1000"])}
    return out


def _template(template: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(template)
    components = []
    for component in out.get("components") or []:
        component = dict(component)
        if component.get("parameters") is not None:
            component["parameters"] = [_parameter(p) for p in component["parameters"]]
        components.append(component)
    out["components"] = components
    return out


def build_message(message: OutboundMessage) -> dict[str, Any]:
    """The Cloud API body for one attempt. Raises ValueError when the content has nothing
    WhatsApp can carry (the API layer should have refused it already)."""
    content = _without_none(message.content)
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": phone_digits(message.to),
    }
    if isinstance(content.get("template"), Mapping):
        body["type"] = "template"
        body["template"] = _template(content["template"])
    elif isinstance(content.get("text"), Mapping):
        text = content["text"]
        body["type"] = "text"
        # Messente defaults preview_url to true; Meta defaults it to false.
        body["text"] = {"body": text.get("body", ""), "preview_url": text.get("preview_url", True)}
    else:
        kind = next((k for k in MEDIA_TYPES if isinstance(content.get(k), Mapping)), None)
        if kind is None:
            raise ValueError("no WhatsApp content (template, text or media)")
        body["type"] = kind
        body[kind] = _media(kind, content[kind])
    body["biz_opaque_callback_data"] = message.message_id
    return body


# --- the channel ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphError:
    http_status: int
    code: int | None
    message: str
    is_transient: bool

    @classmethod
    def parse(cls, response: httpx.Response) -> GraphError:
        error = json_object(response).get("error")
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        return cls(
            http_status=response.status_code,
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            message=str(error.get("message") or response.reason_phrase or "error")[:200],
            is_transient=error.get("is_transient") is True,
        )

    def describe(self) -> str:
        return f"WhatsApp error {self.code if self.code is not None else self.http_status}: " \
               f"{self.message}"


class WhatsAppCloudChannel(HttpChannel[WhatsAppSettings]):
    def __init__(self, settings: WhatsAppSettings, name: str = PROVIDER) -> None:
        super().__init__(settings, name)
        # phone-number id -> the sender key it serves, to name our number on inbound messages
        self._sender_of_id = {v: k for k, v in settings.senders.entries.items()}

    def _headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.settings.access_token}"}

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._send_one(m) for m in batch)))

    async def _send_one(self, message: OutboundMessage) -> SendResult:
        if self._client is None:
            raise RuntimeError(f"{self.name} is not started")
        try:
            body = build_message(message)
        except ValueError as exc:
            return SendResult(message.message_id, status=Status.REJECTD,
                              err=Err.DELIVERY_FAILURE, error=str(exc))
        phone_number_id = self.settings.senders[self.settings.senders.key_for(message.sender)]
        path = f"/{self.settings.api_version}/{phone_number_id}/messages"
        response = await self._post(message.message_id, path, body)
        if isinstance(response, SendResult):
            return response
        return self._result(message.message_id, response)

    def _result(self, message_id: str, response: httpx.Response) -> SendResult:
        if response.is_success:
            messages = json_object(response).get("messages")
            wamid = messages[0].get("id") if isinstance(messages, list) and messages and \
                isinstance(messages[0], dict) else None
            if not isinstance(wamid, str) or not wamid:
                log.error("%s: 2xx without a message id for %s", self.name, message_id)
                return SendResult(message_id, retry_after=TRANSIENT_RETRY)
            return SendResult(message_id, provider_refs=(wamid,))
        error = GraphError.parse(response)
        wait = retry_after_header(response)
        if response.status_code == 429 or error.code in THROTTLED:
            default = THROTTLED.get(error.code, TRANSIENT_RETRY) if error.code is not None \
                else TRANSIENT_RETRY
            return SendResult(message_id, retry_after=wait if wait is not None else default)
        if is_auth_error(error.code, response.status_code):
            # Never log the token itself; the operator needs to know which setting to fix.
            log.error("%s: Meta refused the access token (HTTP %d, code %s: %s); check "
                      "[providers.%s] access_token", self.name, response.status_code,
                      error.code, error.message, self.name)
            return SendResult(message_id, status=Status.FAILED, err=Err.TEMPORARY,
                              error=error.describe())
        if response.status_code >= 500 or error.is_transient:
            return SendResult(message_id, retry_after=wait if wait is not None else
                              TRANSIENT_RETRY)
        log.info("%s: %s refused: %s", self.name, message_id, error.describe())
        return SendResult(message_id, status=Status.REJECTD, err=failure_err(error.code),
                          error=error.describe())

    # --- webhooks ---------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self._handshake, methods=["GET"]),
            Route("/", self._notification, methods=["POST"]),
        ]

    async def _handshake(self, request: Request) -> Response:
        params = request.query_params
        token = params.get("hub.verify_token", "")
        if params.get("hub.mode") == "subscribe" and same_secret(self.settings.verify_token,
                                                                 token):
            return PlainTextResponse(params.get("hub.challenge", ""))
        return PlainTextResponse("verification failed", status_code=403)

    async def _notification(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return PlainTextResponse("too large", status_code=413)
        signature = request.headers.get("x-hub-signature-256")
        if not signature:
            return PlainTextResponse("missing signature", status_code=401)
        expected = hmac_sha256_hex(self.settings.app_secret.encode(), body)
        if not same_secret(expected, signature.removeprefix("sha256=")):
            log.warning("%s: webhook with a wrong X-Hub-Signature-256 refused", self.name)
            return PlainTextResponse("bad signature", status_code=403)
        try:
            payload = json.loads(body)
        except ValueError:
            return PlainTextResponse("invalid JSON", status_code=400)
        reports, inbound = self.parse_notification(payload)
        # Answer 200 only once the sink has stored them: Meta re-delivers anything else.
        if self._sink is None:
            return PlainTextResponse("not started", status_code=503)
        if reports:
            await self._sink.report_statuses(reports)
        if inbound:
            await self._sink.receive_inbound(inbound)
        return PlainTextResponse("ok")

    def parse_notification(self, payload: Any
                           ) -> tuple[list[StatusReport], list[InboundMessage]]:
        reports: list[StatusReport] = []
        inbound: list[InboundMessage] = []
        if not isinstance(payload, dict):
            return reports, inbound
        for entry in _dicts(payload.get("entry")):
            for change in _dicts(entry.get("changes")):
                value = change.get("value")
                if change.get("field") != "messages" or not isinstance(value, dict):
                    continue
                for status in _dicts(value.get("statuses")):
                    report = _status_report(status)
                    if report is not None:
                        reports.append(report)
                recipient = self._our_number(value.get("metadata"))
                for message in _dicts(value.get("messages")):
                    item = _inbound(message, recipient)
                    if item is not None:
                        inbound.append(item)
        return reports, inbound

    def _our_number(self, metadata: Any) -> str:
        """Which of our numbers was written to: the configured sender for the phone-number id,
        else the display number in E.164, else the bare id."""
        metadata = metadata if isinstance(metadata, dict) else {}
        number_id = str(metadata.get("phone_number_id") or "")
        if number_id in self._sender_of_id:
            return self._sender_of_id[number_id]
        display = e164(str(metadata.get("display_phone_number") or ""))
        return display or number_id


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _timestamp(value: Any) -> datetime | None:
    return utc_from_epoch(value)


def _status_report(status: dict[str, Any]) -> StatusReport | None:
    kind = status.get("status")
    wamid = status.get("id")
    ours = status.get("biz_opaque_callback_data")
    if not isinstance(wamid, str) and not isinstance(ours, str):
        return None
    if kind == "failed":
        errors = _dicts(status.get("errors"))
        code = errors[0].get("code") if errors else None
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        title = str(errors[0].get("title") or errors[0].get("message") or "") if errors else ""
        mapped: tuple[Status, Err | None] = (Status.FAILED, failure_err(code))
        error = f"WhatsApp error {code}: {title}".rstrip(": ") if code is not None else \
            "WhatsApp delivery failed"
    elif isinstance(kind, str) and kind in WEBHOOK_STATUS:
        mapped, error = WEBHOOK_STATUS[kind], None
    else:
        log.debug("whatsapp status %r ignored", kind)
        return None
    return StatusReport(
        channel=CHANNEL, status=mapped[0],
        # Our own id when Meta echoes it; the wamid otherwise (the engine matches either).
        message_id=ours if isinstance(ours, str) and ours else None,
        provider_ref=wamid if isinstance(wamid, str) else None,
        err=int(mapped[1]) if mapped[1] is not None else None, error=error,
        occurred_at=_timestamp(status.get("timestamp")),
    )


def _inbound_text(message: dict[str, Any]) -> str | None:
    """Text of an inbound message; media and other kinds become a short marker such as
    "[image] caption" so the application sees that something arrived."""
    kind = str(message.get("type") or "")
    part = message.get(kind) if isinstance(message.get(kind), dict) else {}
    assert isinstance(part, dict)
    if kind == "text":
        return str(part.get("body") or "")
    if kind == "button":
        return str(part.get("text") or part.get("payload") or "")
    if kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        return str(reply.get("title") or "") if isinstance(reply, dict) else ""
    if kind in MEDIA_TYPES:
        caption = part.get("caption")
        return f"[{kind}] {caption}" if caption else f"[{kind}]"
    if kind == "location":
        return f"[location] {part.get('latitude')},{part.get('longitude')}"
    if kind == "contacts":
        return "[contacts]"
    return None  # reactions, system notices, unsupported: not messages for the application


def _inbound(message: dict[str, Any], recipient: str) -> InboundMessage | None:
    sender = e164(str(message.get("from") or ""))
    text = _inbound_text(message)
    if not sender or text is None:
        return None
    wamid = message.get("id")
    return InboundMessage(
        channel=CHANNEL, sender=sender, recipient=recipient, text=text,
        received_at=_timestamp(message.get("timestamp")) or utcnow(),
        provider_ref=wamid if isinstance(wamid, str) else None,
        extra={"type": message.get("type")},
    )


def _whatsapp_cloud(table: Mapping[str, Any], *, name: str, public_url: str) -> Channel:
    del public_url  # Meta's callback URL is set in the app dashboard, not per request.
    return WhatsAppCloudChannel(WhatsAppSettings.from_mapping(table, name), name)


# Provider name -> factory (one WhatsApp upstream so far; a BSP's API would register here).
PROVIDERS: dict[str, ProviderFactory] = {PROVIDER: _whatsapp_cloud}


def create_channel(settings: Mapping[str, Any], *, name: str | None = None,
                   public_url: str = "") -> Channel:
    """Build the WhatsApp provider that `settings["type"]` (else `name`, else "whatsapp_cloud")
    names, from its `[providers.<name>]` table (see the module docstring)."""
    return create_provider(PROVIDERS, "WhatsApp", PROVIDER, settings, name, public_url)
