"""Telegram through the Bot API (provider "telegram_bot").

A bot can only write to users who started it, and it knows them by chat id, not phone number. So
the bot keeps a subscriber registry: a user who sends /start gets a "share my phone number"
button (request_contact); when they press it, the contact arrives in the webhook and its number is
stored with `ChannelSink.remember_subscriber`, only when the contact is the sender's own
(contact.user_id == from.id), so nobody can subscribe someone else's number. A message to a phone
number that has no chat with the sending bot fails at once (FAILED, err 9 Unroutable).

Statuses: the Bot API has no delivery or read receipts. A message Telegram accepted is stored in
the user's chat on Telegram's servers and reaches every device of the user as soon as one is
online, much like mail accepted by the recipient's mailbox. So a successful send is reported as
DELIVRD (err 0) right away; reporting ACK and waiting would end every Telegram attempt in EXPIRED
and always send the fallback too, which is not what anyone who picked Telegram expects.

Configuration (TOML):

    [providers.telegram_bot]
    base_url = "https://api.telegram.org"     # default
    default_sender = "MyShopBot"              # required with several bots
    timeout = 15.0                            # connect_timeout = 5.0, max_concurrency = 16
    [providers.telegram_bot.senders.MyShopBot]  # one table per bot; the key is the sender name
    token = "123456:ABC..."                   # required: from @BotFather
    webhook_secret = "..."                    # required: setWebhook's secret_token
                                              # (1-256 of A-Z a-z 0-9 _ -)
    welcome_text = "..."                      # optional: answer to /start
    share_button_text = "..."                 # optional: the request_contact button
    thanks_text = "..."                       # optional: answer to a shared contact

Subscribers are registered under "<provider name>:<sender key>".

Webhook routes (mounted under /webhooks/<provider name>): `POST /<sender key>` for each bot and
`POST /` for the default bot; `register_webhooks(public_url)` calls setWebhook(url,
secret_token=webhook_secret) for each bot.
Telegram's X-Telegram-Bot-Api-Secret-Token header must equal the secret (missing: 401, wrong: 403,
nothing recorded). Replies to /start and to a contact ride on the webhook answer (a Bot API call
in the response body), so they need no extra request.

Content (Messente's Telegram object) -> method: text -> sendMessage; image_url -> sendPhoto;
document_url -> sendDocument; audio_url -> sendAudio; the text is the caption (or a following
sendMessage when longer than Telegram's 1024-character caption). No parse_mode: Messente's text
is plain.

Submit answers: ok -> DELIVRD err 0, ref "<bot id>:<chat id>:<message id>"; 429 -> retry after
`parameters.retry_after`; 5xx or network errors -> retry in 5 s; 401/404 (bad token) -> FAILED
err 999 with an error log; 403 (blocked, deactivated) and 400 "chat not found" -> REJECTD err 9;
other 400s -> REJECTD err 1.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from omnirelay.channels.base import (
    ChannelSink,
    InboundMessage,
    OutboundMessage,
    SendResult,
)
from omnirelay.channels.http_upstream import (
    MAX_WEBHOOK_BODY,
    TRANSIENT_RETRY,
    ConfigTable,
    HttpSettings,
    SenderTable,
    SubscriberBotChannel,
    e164,
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

PROVIDER = "telegram_bot"
CHANNEL = "telegram"
CAPTION_LIMIT = 1024
SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
BOT_TOKEN = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")
UNREACHABLE = ("chat not found", "user is deactivated", "bot was blocked", "peer_id_invalid",
               "bot can't initiate conversation")

# Content field -> (method, the method's field for the URL)
MEDIA: dict[str, tuple[str, str]] = {
    "image_url": ("sendPhoto", "photo"),
    "document_url": ("sendDocument", "document"),
    "audio_url": ("sendAudio", "audio"),
}


class _RedactBotTokens(logging.Filter):
    """httpx logs every request URL at INFO, and Bot API URLs carry the token
    (/bot<token>/method); rewrite them before any handler sees the record."""

    pattern = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(self.pattern.sub("/bot<redacted>", a) if isinstance(a, str)
                                else self._url(a) for a in args)
        return True

    def _url(self, value: object) -> object:
        text = str(value) if isinstance(value, httpx.URL) else None
        return self.pattern.sub("/bot<redacted>", text) if text is not None else value


_REDACTOR = _RedactBotTokens()


def _install_redactor() -> None:
    logger = logging.getLogger("httpx")
    if _REDACTOR not in logger.filters:
        logger.addFilter(_REDACTOR)


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TelegramBot:
    key: str
    token: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    welcome_text: str = "Please share your phone number to receive our messages here."
    share_button_text: str = "Share my phone number"
    thanks_text: str = "Thank you! You will receive our messages here."

    @property
    def bot_id(self) -> str:
        return self.token.split(":", 1)[0]


@dataclass(frozen=True)  # no slots: from_mapping reads the class defaults
class TelegramBotSettings:
    senders: SenderTable[TelegramBot]
    base_url: str = "https://api.telegram.org"
    http: HttpSettings = field(default_factory=HttpSettings)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], name: str = PROVIDER) -> TelegramBotSettings:
        table = ConfigTable(name, raw)

        def bot(key: str, sub: ConfigTable) -> TelegramBot:
            token = sub.string("token")
            if not BOT_TOKEN.match(token):
                raise ConfigError(f"{sub.where} token must look like 123456:ABC-DEF")
            secret = sub.string("webhook_secret")
            if not SECRET_TOKEN.match(secret):
                raise ConfigError(f"{sub.where} webhook_secret must be 1-256 characters of "
                                  f"A-Z, a-z, 0-9, _ and - (Telegram's rule)")
            return TelegramBot(
                key=key, token=token, webhook_secret=secret,
                welcome_text=sub.string("welcome_text", TelegramBot.welcome_text),
                share_button_text=sub.string("share_button_text", TelegramBot.share_button_text),
                thanks_text=sub.string("thanks_text", TelegramBot.thanks_text))

        settings = cls(base_url=table.url("base_url", cls.base_url),
                       senders=read_bots(table, name, bot), http=HttpSettings.read(table))
        table.done()
        return settings


# --- content mapping ------------------------------------------------------------------------------


def build_calls(content: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(method, parameters without chat_id) to send, in order. Raises ValueError."""
    text = content.get("text") or None
    for key, (method, param) in MEDIA.items():
        url = content.get(key)
        if url:
            if text and len(text) <= CAPTION_LIMIT:
                return [(method, {param: url, "caption": text})]
            calls = [(method, {param: url})]
            if text:
                calls.append(("sendMessage", {"text": text}))
            return calls
    if text:
        return [("sendMessage", {"text": text})]
    raise ValueError("no Telegram content (text, image_url, document_url or audio_url)")


def _chat_id(address: str) -> int | str:
    # Bot API chat ids are integers; send them as JSON numbers, as Telegram documents them.
    try:
        return int(address)
    except ValueError:
        return address


def _telegram_time(value: Any) -> datetime | None:
    return utc_from_epoch(value)


# --- the channel ----------------------------------------------------------------------------------


class TelegramBotChannel(SubscriberBotChannel[TelegramBotSettings, TelegramBot]):
    not_subscribed = "the recipient has no chat with the Telegram bot {key}"

    def __init__(self, settings: TelegramBotSettings, name: str = PROVIDER) -> None:
        super().__init__(settings, name)

    async def start(self, sink: ChannelSink) -> None:
        _install_redactor()
        await super().start(sink)

    async def _send_one(self, bot: TelegramBot, message: OutboundMessage, chat: str
                        ) -> SendResult:
        try:
            calls = build_calls(message.content)
        except ValueError as exc:
            return SendResult(message.message_id, status=Status.REJECTD,
                              err=Err.DELIVERY_FAILURE, error=str(exc))
        refs = await self._send_parts(message.message_id, [
            partial(self._call, bot, message.message_id, method,
                    {"chat_id": _chat_id(chat), **params})
            for method, params in calls])
        if isinstance(refs, SendResult):
            return refs
        return SendResult(message.message_id, status=Status.DELIVRD, err=Err.NO_ERROR,
                          provider_refs=tuple(refs), parts_count=len(refs))

    async def _call(self, bot: TelegramBot, message_id: str, method: str,
                    params: dict[str, Any]) -> str | SendResult:
        """The provider ref of the sent message, or the result that ends this attempt."""
        response = await self._post(message_id, f"/bot{bot.token}/{method}", params)
        if isinstance(response, SendResult):
            return response
        answer = json_object(response)
        result = answer.get("result")
        if answer.get("ok") is True and isinstance(result, dict):
            chat = result.get("chat") if isinstance(result.get("chat"), dict) else {}
            assert isinstance(chat, dict)
            return f"{bot.bot_id}:{chat.get('id', params['chat_id'])}:{result.get('message_id')}"
        code = answer.get("error_code", response.status_code)
        description = str(answer.get("description") or response.reason_phrase)[:200]
        error = f"Telegram {code}: {description}"
        if code == 429 or response.status_code == 429:
            parameters = answer.get("parameters") if isinstance(answer.get("parameters"),
                                                                dict) else {}
            assert isinstance(parameters, dict)
            wait = parameters.get("retry_after")
            if not isinstance(wait, int | float):
                wait = retry_after_header(response)
            return SendResult(message_id, retry_after=float(wait) if wait is not None else
                              TRANSIENT_RETRY)
        if response.status_code >= 500:
            return SendResult(message_id, retry_after=TRANSIENT_RETRY)
        if code in (401, 404):
            # The request path holds the token: name the setting, never the URL.
            log.error("%s: Telegram refused the token of bot %s (%s); check "
                      "[providers.%s.senders.%s] token", self.name, bot.key, error, self.name,
                      bot.key)
            return SendResult(message_id, status=Status.FAILED, err=Err.TEMPORARY, error=error)
        if code == 403 or any(s in description.lower() for s in UNREACHABLE):
            return SendResult(message_id, status=Status.REJECTD, err=Err.UNROUTABLE, error=error)
        return SendResult(message_id, status=Status.REJECTD, err=Err.DELIVERY_FAILURE,
                          error=error)

    # --- webhook ----------------------------------------------------------------------------------

    async def _set_webhook(self, client: httpx.AsyncClient, bot: TelegramBot, url: str
                           ) -> str | None:
        # Message updates only: edits, channel posts and callbacks are not for us.
        response = await client.post(
            f"/bot{bot.token}/setWebhook",
            json={"url": url, "secret_token": bot.webhook_secret,
                  "allowed_updates": ["message"]})
        answer = json_object(response)
        if answer.get("ok") is not True:
            return f"Telegram {answer.get('error_code', response.status_code)}: " \
                   f"{answer.get('description') or response.reason_phrase}"
        return None

    async def _bot_webhook(self, bot: TelegramBot, request: Request) -> Response:
        given = request.headers.get("x-telegram-bot-api-secret-token")
        if given is None:
            return PlainTextResponse("missing secret token", status_code=401)
        if not same_secret(bot.webhook_secret, given):
            log.warning("%s: update with a wrong secret token refused", self.name)
            return PlainTextResponse("bad secret token", status_code=403)
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return PlainTextResponse("too large", status_code=413)
        try:
            update = json.loads(body)
        except ValueError:
            return PlainTextResponse("invalid JSON", status_code=400)
        if self._sink is None:
            return PlainTextResponse("not started", status_code=503)
        message = update.get("message") if isinstance(update, dict) else None
        if not isinstance(message, dict):
            return PlainTextResponse("ok")  # edits, channel posts, callbacks: not for us
        return await self._message(bot, message, self._sink)

    async def _message(self, bot: TelegramBot, message: dict[str, Any], sink: ChannelSink
                       ) -> Response:
        chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
        sender = message.get("from") if isinstance(message.get("from"), dict) else {}
        assert isinstance(chat, dict) and isinstance(sender, dict)
        chat_id, user_id = chat.get("id"), sender.get("id")
        if chat.get("type") != "private" or chat_id is None or user_id is None:
            return PlainTextResponse("ok")
        contact = message.get("contact")
        if isinstance(contact, dict):
            if contact.get("user_id") != user_id:
                # Someone else's contact card: registering it would hand that person's
                # messages to this chat.
                return PlainTextResponse("ok")
            phone = e164(str(contact.get("phone_number") or ""))
            if not phone:
                return PlainTextResponse("ok")
            await sink.remember_subscriber(self.registry_key(bot.key), phone, str(chat_id))
            return JSONResponse({"method": "sendMessage", "chat_id": chat_id,
                                 "text": bot.thanks_text,
                                 "reply_markup": {"remove_keyboard": True}})
        text = message.get("text")
        if not isinstance(text, str):
            return PlainTextResponse("ok")
        if text == "/start" or text.startswith("/start "):
            return JSONResponse({"method": "sendMessage", "chat_id": chat_id,
                                 "text": bot.welcome_text, "reply_markup": {
                                     "keyboard": [[{"text": bot.share_button_text,
                                                    "request_contact": True}]],
                                     "resize_keyboard": True, "one_time_keyboard": True}})
        # The Bot API gives no phone number with a message; the sender is the Telegram user id.
        await sink.receive_inbound([InboundMessage(
            channel=CHANNEL, sender=f"telegram:{user_id}", recipient=bot.key, text=text,
            received_at=_telegram_time(message.get("date")) or utcnow(),
            provider_ref=f"{bot.bot_id}:{chat_id}:{message.get('message_id')}")])
        return PlainTextResponse("ok")
