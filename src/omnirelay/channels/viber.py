"""Viber through the public Viber REST Bot API (provider "viber_bot").

Viber addresses phone numbers only through Business Messages, which need a Viber partner. The
Bot API addresses Viber user ids, which a bot learns from its own callbacks. So this provider keeps
a subscriber registry: when a user shares their contact with the bot (a `message` callback whose
message is a contact, e.g. from the share-phone button of the welcome message), the phone number
and the user id are stored with `ChannelSink.remember_subscriber`. A message to a phone number
that no user has shared with the sending bot fails at once (FAILED, err 9 Unroutable) so the next
channel of the omnimessage starts.

Adding a partner's Business Messages API: write a class with the Channel protocol (and `routes()`
for its callbacks) and register its factory in PROVIDERS under a new provider name; then
`[providers.<name>] type = "<that name>"` (or a table named after it) and `[channels] viber =
"<name>"` select it. Nothing outside channels/ and the configuration changes.

Configuration (TOML):

    [providers.viber_bot]
    base_url = "https://chatapi.viber.com"   # default
    default_sender = "MyShop"                # required with several bots
    timeout = 15.0                           # connect_timeout = 5.0, max_concurrency = 16
    [providers.viber_bot.senders.MyShop]     # one table per bot; the key is the sender name
    auth_token = "..."                       # required: the bot's token
    name = "My Shop"                         # shown as the sender (<= 28 chars); default: key
    avatar = "https://.../a.jpg"             # optional
    welcome_text = "Share your number ..."   # optional: greeting with a share-phone button

Each bot's subscribers are registered under "<provider name>:<sender key>" (a Viber user id is
only valid for the bot that learned it).

Webhook routes (mounted under /webhooks/<provider name>): `POST /<sender key>` for each bot and
`POST /` for the default bot. `register_webhooks(public_url)` registers them with Viber's
set_webhook (event types delivered, seen, failed, subscribed, unsubscribed,
conversation_started) once the app is reachable; every callback must carry
`X-Viber-Content-Signature`, the hex HMAC-SHA256 of the raw body keyed with the bot's token
(missing: 401, wrong: 403, nothing recorded).

Content (Messente's Viber object) -> Bot API messages:

    text                                    -> text
    image_url (+ text as the caption)       -> picture
    text + button_text + button_url (+image)-> rich_media card: image, text, open-url button
    video (+ text, + button)                -> video, then the text (or card) as a second message
    carousel (+ text)                       -> the text, then a rich_media carousel
    template                                -> not possible on the Bot API: FAILED err 9

Statuses: callback delivered -> DELIVRD err 0, seen -> SEEN err 10, failed -> FAILED err 1.
The provider ref is the message_token as a string. Submit answers (HTTP 200 with a `status`):
0 ok; 12 too many requests -> retry in 60 s; 2 bad token, 10 webhook not set and 7-9 (bot
blocked/missing/suspended) -> FAILED with an error log; 5/6 (user gone, unsubscribed) -> REJECTD
err 9; other refusals -> REJECTD err 1.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from omnirelay.channels.base import (
    Channel,
    ChannelSink,
    InboundMessage,
    OutboundMessage,
    SendResult,
    StatusReport,
)
from omnirelay.channels.http_upstream import (
    MAX_WEBHOOK_BODY,
    TRANSIENT_RETRY,
    ConfigTable,
    HttpSettings,
    ProviderFactory,
    SenderTable,
    SubscriberBotChannel,
    create_provider,
    e164,
    hmac_sha256_hex,
    json_object,
    read_bots,
    retry_after_header,
    same_secret,
    utc_from_epoch,
)
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import utcnow
from omnirelay.errors import ConfigError

log = logging.getLogger(__name__)

PROVIDER = "viber_bot"
CHANNEL = "viber"
SEND_PATH = "/pa/send_message"
THROTTLE_RETRY = 60.0  # status 12: Viber allows about 100 unanswered messages per user and hour
MAX_SENDER_NAME = 28

# Viber status -> (status, err, our side's fault: log it as an error)
SUBMIT_ERRORS: dict[int, tuple[Status, Err, bool]] = {
    1: (Status.REJECTD, Err.DELIVERY_FAILURE, False),  # invalidUrl
    2: (Status.FAILED, Err.TEMPORARY, True),  # invalidAuthToken
    3: (Status.REJECTD, Err.DELIVERY_FAILURE, False),  # badData
    4: (Status.REJECTD, Err.DELIVERY_FAILURE, False),  # missingData
    5: (Status.REJECTD, Err.UNROUTABLE, False),  # receiverNotRegistered
    6: (Status.REJECTD, Err.UNROUTABLE, False),  # receiverNotSubscribed
    7: (Status.FAILED, Err.SENDER_NOT_ALLOWED, True),  # publicAccountBlocked
    8: (Status.FAILED, Err.SENDER_NOT_ALLOWED, True),  # publicAccountNotFound
    9: (Status.FAILED, Err.SENDER_NOT_ALLOWED, True),  # publicAccountSuspended
    10: (Status.FAILED, Err.TEMPORARY, True),  # webhookNotSet: Viber refuses sends until it is
    11: (Status.REJECTD, Err.DELIVERY_FAILURE, False),  # receiverNoSuitableDevice
}
TOO_MANY_REQUESTS = 12

WEBHOOK_EVENTS = ("delivered", "seen", "failed", "subscribed", "unsubscribed",
                  "conversation_started")

CALLBACK_STATUS: dict[str, tuple[Status, Err]] = {
    "delivered": (Status.DELIVRD, Err.NO_ERROR),
    "seen": (Status.SEEN, Err.SEEN),
    "failed": (Status.FAILED, Err.DELIVERY_FAILURE),
}


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViberBot:
    key: str
    auth_token: str = field(repr=False)
    name: str
    avatar: str | None = None
    welcome_text: str | None = None

    def sender(self) -> dict[str, str]:
        sender = {"name": self.name}
        if self.avatar:
            sender["avatar"] = self.avatar
        return sender


@dataclass(frozen=True)  # no slots: from_mapping reads the class defaults
class ViberBotSettings:
    senders: SenderTable[ViberBot]
    base_url: str = "https://chatapi.viber.com"
    http: HttpSettings = field(default_factory=HttpSettings)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], name: str = PROVIDER) -> ViberBotSettings:
        table = ConfigTable(name, raw)

        def bot(key: str, sub: ConfigTable) -> ViberBot:
            bot = ViberBot(key=key, auth_token=sub.string("auth_token"),
                           name=sub.string("name", key), avatar=sub.optional_string("avatar"),
                           welcome_text=sub.optional_string("welcome_text"))
            if len(bot.name) > MAX_SENDER_NAME:
                raise ConfigError(f"{sub.where} name must be at most {MAX_SENDER_NAME} "
                                  f"characters (Viber's limit)")
            return bot

        settings = cls(base_url=table.url("base_url", cls.base_url),
                       senders=read_bots(table, name, bot), http=HttpSettings.read(table))
        table.done()
        return settings


# --- content mapping ------------------------------------------------------------------------------


class Unsupported(ValueError):
    """Content the Bot API cannot carry at all (as opposed to malformed content)."""


def _markup(text: str) -> str:
    # Rich-media cells render Viber's small HTML subset; user text must not be taken for it.
    return html.escape(text, quote=False).replace("\n", "<br>")


def _text_rows(text: str, available: int) -> int:
    # A 6-column row holds roughly two short lines; this only sizes the card, Viber wraps text.
    return max(1, min(available, 1 + len(text) // 90))


def _card(text: str | None, button_text: str, button_url: str, image_url: str | None
          ) -> dict[str, Any]:
    cells: list[dict[str, Any]] = []
    if image_url:
        cells.append({"Columns": 6, "Rows": 3, "ActionType": "open-url",
                      "ActionBody": button_url, "Image": image_url})
    if text:
        cells.append({"Columns": 6, "Rows": _text_rows(text, 6 - len(cells) * 3),
                      "ActionType": "none", "Text": _markup(text), "TextHAlign": "left",
                      "TextVAlign": "middle"})
    cells.append({"Columns": 6, "Rows": 1, "ActionType": "open-url", "ActionBody": button_url,
                  "Text": f"<b>{_markup(button_text)}</b>", "TextSize": "large"})
    return {"type": "rich_media", "min_api_version": 2, "rich_media": {
        "Type": "rich_media", "ButtonsGroupColumns": 6,
        "ButtonsGroupRows": sum(c["Rows"] for c in cells), "BgColor": "#FFFFFF",
        "Buttons": cells}}


def _carousel(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    cells: list[dict[str, Any]] = []
    for item in items:
        buttons = [b for b in (item.get("primary_button"), item.get("secondary_button"))
                   if isinstance(b, Mapping)]
        first_url = str(buttons[0]["action_url"]) if buttons else ""
        # Every block is 7 rows: the image takes what the title and buttons leave.
        cells.append({"Columns": 6, "Rows": 6 - len(buttons), "ActionType": "open-url",
                      "ActionBody": first_url, "Image": item.get("image_url")})
        cells.append({"Columns": 6, "Rows": 1, "ActionType": "none",
                      "Text": f"<b>{_markup(str(item.get('title', '')))}</b>"})
        cells.extend({"Columns": 6, "Rows": 1, "ActionType": "open-url",
                      "ActionBody": str(b["action_url"]), "Text": _markup(str(b["label"]))}
                     for b in buttons)
    return {"type": "rich_media", "min_api_version": 2, "rich_media": {
        "Type": "rich_media", "ButtonsGroupColumns": 6, "ButtonsGroupRows": 7,
        "BgColor": "#FFFFFF", "Buttons": cells}}


def build_payloads(content: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Bot API messages (without receiver and sender) for one Messente Viber variant, in
    the order to send them. Raises Unsupported or ValueError."""
    if content.get("template"):
        raise Unsupported("Viber templates need Business Messages; the Bot API has none")
    text = content.get("text") or None
    image_url = content.get("image_url") or None
    button_text = content.get("button_text") or None
    button_url = content.get("button_url") or None
    video = content.get("video")
    carousel = content.get("carousel")
    payloads: list[dict[str, Any]] = []
    if isinstance(video, Mapping):
        part: dict[str, Any] = {"type": "video", "media": video.get("url"),
                                "size": video.get("file_size")}
        if video.get("thumbnail"):
            part["thumbnail"] = video["thumbnail"]
        if video.get("duration") is not None:
            part["duration"] = video["duration"]
        payloads.append(part)
    if isinstance(carousel, Mapping) and carousel.get("items"):
        if text:
            payloads.append({"type": "text", "text": text})
        payloads.append(_carousel(carousel["items"]))
    elif button_text and button_url and (text or image_url):
        payloads.append(_card(text, button_text, button_url, image_url))
    elif image_url:
        # Viber requires a picture's text, an empty string when there is none.
        payloads.append({"type": "picture", "text": text or "", "media": image_url})
    elif text:
        payloads.append({"type": "text", "text": text})
    if not payloads:
        raise ValueError("no Viber content (text, image_url, video or carousel)")
    return payloads


# --- the channel ----------------------------------------------------------------------------------


def _viber_time(value: Any) -> datetime | None:
    return utc_from_epoch(value, per_second=1000)


class ViberBotChannel(SubscriberBotChannel[ViberBotSettings, ViberBot]):
    not_subscribed = "the recipient has not shared a phone number with the Viber bot {key}"

    def __init__(self, settings: ViberBotSettings, name: str = PROVIDER) -> None:
        super().__init__(settings, name)

    async def _send_one(self, bot: ViberBot, message: OutboundMessage, user_id: str
                        ) -> SendResult:
        try:
            payloads = build_payloads(message.content)
        except Unsupported as exc:
            return SendResult(message.message_id, status=Status.FAILED, err=Err.UNROUTABLE,
                              error=str(exc))
        except ValueError as exc:
            return SendResult(message.message_id, status=Status.REJECTD,
                              err=Err.DELIVERY_FAILURE, error=str(exc))
        refs = await self._send_parts(message.message_id, [
            partial(self._send_payload, bot, message.message_id,
                    {"receiver": user_id, "sender": bot.sender(), **payload})
            for payload in payloads])
        if isinstance(refs, SendResult):
            return refs
        return SendResult(message.message_id, provider_refs=tuple(refs), parts_count=len(refs))

    async def _send_payload(self, bot: ViberBot, message_id: str, body: dict[str, Any]
                            ) -> str | SendResult:
        """The message token, or the result that ends this attempt."""
        response = await self._post(message_id, SEND_PATH, body,
                                    headers={"X-Viber-Auth-Token": bot.auth_token})
        if isinstance(response, SendResult):
            return response
        if response.status_code == 429 or response.status_code >= 500:
            wait = retry_after_header(response)
            return SendResult(message_id, retry_after=wait if wait is not None else
                              TRANSIENT_RETRY)
        answer = json_object(response)
        code = answer.get("status")
        detail = str(answer.get("status_message") or response.reason_phrase)[:200]
        if code == 0 and answer.get("message_token") is not None:
            return str(answer["message_token"])
        if code == TOO_MANY_REQUESTS:
            return SendResult(message_id, retry_after=THROTTLE_RETRY)
        status, err, ours = SUBMIT_ERRORS.get(code, (Status.FAILED, Err.TEMPORARY, True)) \
            if isinstance(code, int) else (Status.FAILED, Err.TEMPORARY, True)
        if ours:
            log.error("%s: Viber refused bot %s (status %s: %s); check [providers.%s]",
                      self.name, bot.key, code, detail, self.name)
        return SendResult(message_id, status=status, err=err,
                          error=f"Viber status {code}: {detail}")

    # --- webhooks ---------------------------------------------------------------------------------

    async def _set_webhook(self, client: httpx.AsyncClient, bot: ViberBot, url: str
                           ) -> str | None:
        # Viber calls the URL back before it answers, hence register_webhooks' timing.
        response = await client.post(
            "/pa/set_webhook", headers={"X-Viber-Auth-Token": bot.auth_token},
            json={"url": url, "event_types": list(WEBHOOK_EVENTS), "send_name": True,
                  "send_photo": False})
        answer = json_object(response)
        if answer.get("status") != 0:
            return f"Viber status {answer.get('status')}: " \
                   f"{answer.get('status_message') or response.reason_phrase}"
        return None

    async def _bot_webhook(self, bot: ViberBot, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return PlainTextResponse("too large", status_code=413)
        signature = request.headers.get("x-viber-content-signature")
        if not signature:
            return PlainTextResponse("missing signature", status_code=401)
        if not same_secret(hmac_sha256_hex(bot.auth_token.encode(), body), signature):
            log.warning("%s: callback with a wrong X-Viber-Content-Signature refused", self.name)
            return PlainTextResponse("bad signature", status_code=403)
        try:
            event = json.loads(body)
        except ValueError:
            return PlainTextResponse("invalid JSON", status_code=400)
        if not isinstance(event, dict):
            return PlainTextResponse("invalid event", status_code=400)
        if self._sink is None:
            return PlainTextResponse("not started", status_code=503)
        # Answer 200 only after the sink stored the event: Viber retries anything else.
        return await self._handle(bot, event, self._sink)

    async def _handle(self, bot: ViberBot, event: dict[str, Any], sink: ChannelSink
                      ) -> Response:
        kind = event.get("event")
        if kind in CALLBACK_STATUS and event.get("message_token") is not None:
            status, err = CALLBACK_STATUS[kind]
            desc = event.get("desc")
            await sink.report_statuses([StatusReport(
                channel=CHANNEL, status=status, provider_ref=str(event["message_token"]),
                err=int(err), error=f"Viber: {desc}"[:200] if kind == "failed" and desc else None,
                occurred_at=_viber_time(event.get("timestamp")))])
        elif kind == "message":
            await self._message(bot, event, sink)
        elif kind == "conversation_started" and bot.welcome_text:
            # The answer to conversation_started is shown to the user as the welcome message.
            return JSONResponse({
                "sender": bot.sender(), "type": "text", "text": bot.welcome_text,
                "min_api_version": 3,
                "keyboard": {"Type": "keyboard", "DefaultHeight": False, "Buttons": [
                    {"Columns": 6, "Rows": 1, "ActionType": "share-phone",
                     "ActionBody": "share-phone", "Text": "Share my phone number"}]}})
        return PlainTextResponse("ok")

    async def _message(self, bot: ViberBot, event: dict[str, Any], sink: ChannelSink) -> None:
        user = event.get("sender") if isinstance(event.get("sender"), dict) else {}
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        assert isinstance(user, dict) and isinstance(message, dict)
        user_id = user.get("id")
        if not isinstance(user_id, str) or not user_id:
            return
        contact = message.get("contact")
        if message.get("type") == "contact" and isinstance(contact, dict):
            # Viber does not tell whether the contact is the user's own (share-phone) or one
            # they picked from their address book; see the module notes in the report.
            phone = e164(str(contact.get("phone_number") or ""))
            if phone:
                await sink.remember_subscriber(self.registry_key(bot.key), phone, user_id)
            return
        if message.get("type") == "text" and isinstance(message.get("text"), str):
            token = event.get("message_token")
            # The Bot API gives no phone number with a message; the sender is the Viber user id.
            await sink.receive_inbound([InboundMessage(
                channel=CHANNEL, sender=f"viber:{user_id}", recipient=bot.key,
                text=message["text"], received_at=_viber_time(event.get("timestamp")) or utcnow(),
                provider_ref=str(token) if token is not None else None)])


def _viber_bot(table: Mapping[str, Any], *, name: str, public_url: str) -> Channel:
    del public_url  # the webhook is registered with set_webhook, outside the send path
    return ViberBotChannel(ViberBotSettings.from_mapping(table, name), name)


# Provider name -> factory. A Business Messages partner adapter registers here.
PROVIDERS: dict[str, ProviderFactory] = {PROVIDER: _viber_bot}


def create_channel(settings: Mapping[str, Any], *, name: str | None = None,
                   public_url: str = "") -> Channel:
    """Build the Viber provider that `settings["type"]` (else `name`, else "viber_bot") names."""
    return create_provider(PROVIDERS, "Viber", PROVIDER, settings, name, public_url)
