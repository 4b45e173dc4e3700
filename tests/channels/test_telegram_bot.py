"""Telegram Bot API provider against a fake api.telegram.org and through its webhook routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from omnirelay.channels.base import OutboundMessage
from omnirelay.channels.telegram import (
    PROVIDERS,
    TelegramBotChannel,
    TelegramBotSettings,
    create_channel,
)
from omnirelay.core.statuses import Err, Status
from omnirelay.errors import ConfigError
from tests.channels.support import FakeUpstream, Recorded, RecordingSink, ok_json, webhook_server

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
OTHER_TOKEN = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET = "hook-secret_42"
CHAT = 555000111
PHONE = "+37256789012"


def config(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "default_sender": "ShopBot", "timeout": 5.0, "senders": {
        "ShopBot": {"token": TOKEN, "webhook_secret": SECRET, "welcome_text": "Welcome!"},
        "NewsBot": {"token": OTHER_TOKEN, "webhook_secret": "news-secret"}}}


def outbound(content: dict[str, Any], *, message_id: str = "m-1", sender: str = "ShopBot",
             to: str = PHONE) -> OutboundMessage:
    return OutboundMessage(message_id=message_id, omnimessage_id="om-1", account_id=1,
                           channel="telegram", to=to, sender=sender, content=content)


class Bot:
    """Answers like the Bot API: {"ok": true, "result": <Message>} with growing message ids."""

    def __init__(self) -> None:
        self.message_id = 100

    def __call__(self, request: Recorded) -> Any:
        self.message_id += 1
        return ok_json({"ok": True, "result": {
            "message_id": self.message_id, "date": 1700000000,
            "chat": {"id": request.json()["chat_id"], "type": "private"}}})


@pytest.fixture
async def channel(upstream: FakeUpstream, sink: RecordingSink
                  ) -> AsyncIterator[TelegramBotChannel]:
    ch = create_channel(config(upstream.url), name="telegram_bot")
    assert isinstance(ch, TelegramBotChannel)
    await ch.start(sink)
    try:
        yield ch
    finally:
        await ch.stop()


@pytest.fixture
def subscribed(sink: RecordingSink) -> RecordingSink:
    sink.subscribers[("telegram_bot:ShopBot", PHONE)] = str(CHAT)
    return sink


# --- sending -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "method", "params"), [
    ({"text": "Hello"}, "sendMessage", {"text": "Hello"}),
    ({"text": "Look", "image_url": "https://x/p.jpg"}, "sendPhoto",
     {"photo": "https://x/p.jpg", "caption": "Look"}),
    ({"document_url": "https://x/d.pdf"}, "sendDocument", {"document": "https://x/d.pdf"}),
    ({"audio_url": "https://x/a.mp3", "text": "Song"}, "sendAudio",
     {"audio": "https://x/a.mp3", "caption": "Song"}),
])
async def test_content_goes_to_the_right_method(
        channel: TelegramBotChannel, upstream: FakeUpstream, subscribed: RecordingSink,
        content: dict[str, Any], method: str, params: dict[str, Any]) -> None:
    upstream.handler = Bot()
    [result] = await channel.send([outbound(content)])
    # No receipts exist on the Bot API: accepted by Telegram is reported as delivered.
    assert (result.status, result.err) == (Status.DELIVRD, Err.NO_ERROR)
    assert result.provider_refs == (f"123456789:{CHAT}:101",)
    [request] = upstream.requests
    assert (request.method, request.path) == ("POST", f"/bot{TOKEN}/{method}")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"chat_id": CHAT, **params}


async def test_long_caption_goes_as_a_second_message(
        channel: TelegramBotChannel, upstream: FakeUpstream, subscribed: RecordingSink) -> None:
    upstream.handler = Bot()
    text = "x" * 1100
    [result] = await channel.send([outbound({"image_url": "https://x/p.jpg", "text": text})])
    assert result.parts_count == 2 and len(result.provider_refs) == 2
    assert [r.path.rsplit("/", 1)[1] for r in upstream.requests] == ["sendPhoto", "sendMessage"]
    assert upstream.requests[1].json() == {"chat_id": CHAT, "text": text}


async def test_no_chat_for_the_number_is_unroutable_at_once(
        channel: TelegramBotChannel, upstream: FakeUpstream, subscribed: RecordingSink) -> None:
    results = await channel.send([outbound({"text": "x"}, to="+15550000000", message_id="a"),
                                  outbound({"text": "x"}, sender="NewsBot", message_id="b")])
    assert {(r.status, r.err) for r in results} == {(Status.FAILED, Err.UNROUTABLE)}
    assert upstream.requests == []


@pytest.mark.parametrize(("status", "answer", "expected"), [
    (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
     (Status.REJECTD, Err.UNROUTABLE, None)),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
     (Status.REJECTD, Err.UNROUTABLE, None)),
    (400, {"ok": False, "error_code": 400,
           "description": "Bad Request: wrong file identifier/HTTP URL specified"},
     (Status.REJECTD, Err.DELIVERY_FAILURE, None)),
    (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 17",
           "parameters": {"retry_after": 17}}, (None, None, 17.0)),
    (401, {"ok": False, "error_code": 401, "description": "Unauthorized"},
     (Status.FAILED, Err.TEMPORARY, None)),
    (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}, (None, None, 5.0)),
])
async def test_error_answers(channel: TelegramBotChannel, upstream: FakeUpstream,
                             subscribed: RecordingSink, caplog: pytest.LogCaptureFixture,
                             status: int, answer: dict[str, Any],
                             expected: tuple[Status | None, Err | None, float | None]) -> None:
    upstream.handler = lambda _r: ok_json(answer, status)
    with caplog.at_level(logging.DEBUG):
        [result] = await channel.send([outbound({"text": "private words"})])
    assert (result.status, result.err, result.retry_after) == expected
    # httpx logs request URLs, which carry the bot token: they must come out redacted
    assert TOKEN not in caplog.text
    assert "private words" not in caplog.text


# --- webhook -----------------------------------------------------------------------------------


@pytest.fixture
async def hooks(channel: TelegramBotChannel) -> AsyncIterator[httpx.AsyncClient]:
    server = await webhook_server(channel.routes(), "/webhooks/telegram_bot").start()
    try:
        async with httpx.AsyncClient(base_url=f"{server.url}/webhooks/telegram_bot",
                                     timeout=5) as client:
            yield client
    finally:
        await server.stop()


def update(message: dict[str, Any], user: int = CHAT) -> dict[str, Any]:
    return {"update_id": 1, "message": {
        "message_id": 7, "date": 1700000000,
        "from": {"id": user, "is_bot": False, "first_name": "Ann"},
        "chat": {"id": user, "type": "private", "first_name": "Ann"}, **message}}


async def post(hooks: httpx.AsyncClient, path: str, body: dict[str, Any],
               secret: str | None = SECRET) -> httpx.Response:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    return await hooks.post(path, json=body, headers=headers)


async def test_start_asks_for_the_contact_and_contact_registers(
        hooks: httpx.AsyncClient, sink: RecordingSink) -> None:
    start = await post(hooks, "/ShopBot", update({"text": "/start"}))
    assert start.status_code == 200
    reply = start.json()
    assert reply["method"] == "sendMessage" and reply["chat_id"] == CHAT
    assert reply["text"] == "Welcome!"
    assert reply["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    assert sink.empty

    contact = {"contact": {"phone_number": "37256789012", "first_name": "Ann", "user_id": CHAT}}
    shared = await post(hooks, "/", update(contact))  # "/" is the default bot
    assert shared.status_code == 200
    assert shared.json()["reply_markup"] == {"remove_keyboard": True}
    assert sink.subscribers == {("telegram_bot:ShopBot", PHONE): str(CHAT)}


async def test_someone_elses_contact_is_not_registered(hooks: httpx.AsyncClient,
                                                      sink: RecordingSink) -> None:
    contact = {"contact": {"phone_number": "+15551234567", "first_name": "Bob",
                           "user_id": 42}}
    assert (await post(hooks, "/ShopBot", update(contact))).status_code == 200
    card = {"contact": {"phone_number": "+15551234567", "first_name": "Bob"}}  # no user_id
    assert (await post(hooks, "/ShopBot", update(card))).status_code == 200
    assert sink.empty


async def test_inbound_text(hooks: httpx.AsyncClient, sink: RecordingSink) -> None:
    assert (await post(hooks, "/ShopBot", update({"text": "need help"}))).status_code == 200
    [message] = sink.inbound
    assert (message.channel, message.sender, message.recipient, message.text) == \
        ("telegram", f"telegram:{CHAT}", "ShopBot", "need help")
    assert message.received_at.isoformat() == "2023-11-14T22:13:20"
    # edits and other update kinds are acknowledged and ignored
    edited = {"update_id": 2, "edited_message": update({"text": "x"})["message"]}
    assert (await post(hooks, "/ShopBot", edited)).status_code == 200
    assert len(sink.inbound) == 1


@pytest.mark.parametrize(("path", "secret", "code"), [
    ("/ShopBot", None, 401),
    ("/ShopBot", "wrong", 403),
    ("/ShopBot", "news-secret", 403),  # another bot's secret
    ("/NewsBot", SECRET, 403),
    ("/Nobody", SECRET, 404),
])
async def test_wrong_secret_is_refused(hooks: httpx.AsyncClient, sink: RecordingSink, path: str,
                                       secret: str | None, code: int) -> None:
    for message in ({"text": "hello"},
                    {"contact": {"phone_number": "+15551234567", "user_id": CHAT}}):
        assert (await post(hooks, path, update(message), secret)).status_code == code
    assert sink.empty


# --- configuration -----------------------------------------------------------------------------


def test_settings() -> None:
    settings = TelegramBotSettings.from_mapping(
        {"senders": {"B": {"token": TOKEN, "webhook_secret": SECRET}}})
    assert settings.base_url == "https://api.telegram.org"
    assert settings.senders["B"].bot_id == "123456789"
    assert TOKEN not in repr(settings) and SECRET not in repr(settings)
    with pytest.raises(ConfigError, match="webhook_secret is required"):
        TelegramBotSettings.from_mapping({"senders": {"B": {"token": TOKEN}}})
    with pytest.raises(ConfigError, match="webhook_secret must be"):
        TelegramBotSettings.from_mapping({"senders": {"B": {"token": TOKEN,
                                                            "webhook_secret": "a b"}}})
    with pytest.raises(ConfigError, match="token must look like"):
        TelegramBotSettings.from_mapping({"senders": {"B": {"token": "nope",
                                                            "webhook_secret": SECRET}}})
    with pytest.raises(ConfigError, match="unknown Telegram provider"):
        create_channel({"type": "telegram_mtproto"})
    assert set(PROVIDERS) == {"telegram_bot", "telegram_gateway"}


async def test_register_webhooks(channel: TelegramBotChannel, upstream: FakeUpstream) -> None:
    upstream.handler = lambda _r: ok_json({"ok": True, "result": True,
                                           "description": "Webhook was set"})
    assert await channel.register_webhooks("https://gw.example.com") == {}
    calls = {r.path: r.json() for r in upstream.requests}
    assert calls[f"/bot{TOKEN}/setWebhook"] == {
        "url": "https://gw.example.com/webhooks/telegram_bot/ShopBot", "secret_token": SECRET,
        "allowed_updates": ["message"]}
    assert calls[f"/bot{OTHER_TOKEN}/setWebhook"]["secret_token"] == "news-secret"
