"""Viber REST Bot API provider against a fake chatapi.viber.com and through its webhook routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from omnirelay.channels.base import OutboundMessage
from omnirelay.channels.viber import (
    PROVIDERS,
    ViberBotChannel,
    ViberBotSettings,
    build_payloads,
    create_channel,
)
from omnirelay.core.statuses import Err, Status
from omnirelay.errors import ConfigError
from tests.channels.support import (
    FakeUpstream,
    Recorded,
    RecordingSink,
    dumps,
    hmac_hex,
    ok_json,
    webhook_server,
)

SHOP_TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
NEWS_TOKEN = "news-token-0000-1111"
USER = "01234567890A="
PHONE = "+37256789012"


def config(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "default_sender": "MyShop", "timeout": 5.0, "senders": {
        "MyShop": {"auth_token": SHOP_TOKEN, "name": "My Shop",
                   "avatar": "https://x/avatar.jpg", "welcome_text": "Hi! Share your number."},
        "News": {"auth_token": NEWS_TOKEN}}}


def outbound(content: dict[str, Any], *, message_id: str = "m-1", sender: str = "MyShop",
             to: str = PHONE) -> OutboundMessage:
    return OutboundMessage(message_id=message_id, omnimessage_id="om-1", account_id=1,
                           channel="viber", to=to, sender=sender, content=content)


class Tokens:
    """Answers like Viber: HTTP 200 with status 0 and a fresh numeric message_token."""

    def __init__(self) -> None:
        self.next = 5741311803571721087

    def __call__(self, _request: Recorded) -> Any:
        self.next += 1
        return ok_json({"status": 0, "status_message": "ok", "message_token": self.next,
                        "chat_hostname": "SN-CHAT-05_", "billing_status": 1})


@pytest.fixture
async def channel(upstream: FakeUpstream, sink: RecordingSink) -> AsyncIterator[ViberBotChannel]:
    ch = create_channel(config(upstream.url))
    assert isinstance(ch, ViberBotChannel)
    await ch.start(sink)
    try:
        yield ch
    finally:
        await ch.stop()


@pytest.fixture
def subscribed(sink: RecordingSink) -> RecordingSink:
    sink.subscribers[("viber_bot:MyShop", PHONE)] = USER
    return sink


SHOP_SENDER = {"name": "My Shop", "avatar": "https://x/avatar.jpg"}


# --- sending -----------------------------------------------------------------------------------


async def test_text_to_a_subscriber(channel: ViberBotChannel, upstream: FakeUpstream,
                                    subscribed: RecordingSink) -> None:
    upstream.handler = Tokens()
    [result] = await channel.send([outbound({"text": "Hello"})])
    assert result.provider_refs == ("5741311803571721088",)
    assert result.status is None
    [request] = upstream.requests
    assert (request.method, request.path) == ("POST", "/pa/send_message")
    assert request.headers["x-viber-auth-token"] == SHOP_TOKEN
    assert request.json() == {"receiver": USER, "sender": SHOP_SENDER, "type": "text",
                              "text": "Hello"}
    assert subscribed.lookups == [("viber_bot:MyShop", (PHONE,))]


async def test_not_a_subscriber_fails_at_once(channel: ViberBotChannel, upstream: FakeUpstream,
                                              subscribed: RecordingSink) -> None:
    [result] = await channel.send([outbound({"text": "x"}, to="+37250000000")])
    assert (result.status, result.err) == (Status.FAILED, Err.UNROUTABLE)
    # a subscriber of MyShop is not a subscriber of the News bot
    [other] = await channel.send([outbound({"text": "x"}, sender="News")])
    assert (other.status, other.err) == (Status.FAILED, Err.UNROUTABLE)
    assert upstream.requests == []


async def test_picture_card_and_video(channel: ViberBotChannel, upstream: FakeUpstream,
                                      subscribed: RecordingSink) -> None:
    upstream.handler = Tokens()
    picture, card, video = await channel.send([
        outbound({"image_url": "https://x/p.jpg"}, message_id="p"),
        outbound({"text": "Sale <50%>", "image_url": "https://x/p.jpg", "button_text": "Buy",
                  "button_url": "https://shop/x"}, message_id="c"),
        outbound({"video": {"url": "https://x/v.mp4", "thumbnail": "https://x/t.jpg",
                            "file_size": 1000, "duration": 10}, "text": "Watch"},
                 message_id="v"),
    ])
    assert len(picture.provider_refs) == 1 and len(card.provider_refs) == 1
    assert len(video.provider_refs) == 2 and video.parts_count == 2
    bodies = [r.json() for r in upstream.requests]
    assert all(b["receiver"] == USER and b["sender"] == SHOP_SENDER for b in bodies)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        by_type.setdefault(body["type"], []).append(body)
    assert by_type["picture"] == [{"receiver": USER, "sender": SHOP_SENDER, "type": "picture",
                                   "text": "", "media": "https://x/p.jpg"}]
    [rich] = by_type["rich_media"]
    assert rich["min_api_version"] == 2
    media = rich["rich_media"]
    assert media["Type"] == "rich_media" and media["ButtonsGroupColumns"] == 6
    assert media["ButtonsGroupRows"] == sum(b["Rows"] for b in media["Buttons"]) <= 7
    image, text, button = media["Buttons"]
    assert image["Image"] == "https://x/p.jpg"
    assert text["Text"] == "Sale &lt;50%&gt;"
    assert (button["ActionType"], button["ActionBody"]) == ("open-url", "https://shop/x")
    assert "Buy" in button["Text"]
    assert by_type["video"] == [{"receiver": USER, "sender": SHOP_SENDER, "type": "video",
                                 "media": "https://x/v.mp4", "size": 1000, "duration": 10,
                                 "thumbnail": "https://x/t.jpg"}]
    assert by_type["text"][0]["text"] == "Watch"


def test_carousel_and_template_mapping() -> None:
    item = {"title": "Shoes", "image_url": "https://x/s.jpg",
            "primary_button": {"label": "Buy", "action_url": "https://s/1"}}
    text, carousel = build_payloads({"text": "Pick one", "carousel": {"items": [
        item, {**item, "secondary_button": {"label": "More", "action_url": "https://s/2"}}]}})
    assert text == {"type": "text", "text": "Pick one"}
    buttons = carousel["rich_media"]["Buttons"]
    assert sum(b["Rows"] for b in buttons) == 14  # two blocks of 7 rows
    with pytest.raises(ValueError, match="Business Messages"):
        build_payloads({"template": {"id": "t", "lang": "en"}})
    with pytest.raises(ValueError):
        build_payloads({})


@pytest.mark.parametrize(("status", "message", "expected"), [
    (5, "receiverNotRegistered", (Status.REJECTD, Err.UNROUTABLE)),
    (6, "receiverNotSubscribed", (Status.REJECTD, Err.UNROUTABLE)),
    (3, "badData", (Status.REJECTD, Err.DELIVERY_FAILURE)),
    (2, "invalidAuthToken", (Status.FAILED, Err.TEMPORARY)),
])
async def test_refusals(channel: ViberBotChannel, upstream: FakeUpstream,
                        subscribed: RecordingSink, caplog: pytest.LogCaptureFixture,
                        status: int, message: str, expected: tuple[Status, Err]) -> None:
    upstream.handler = lambda _r: ok_json({"status": status, "status_message": message})
    [result] = await channel.send([outbound({"text": "private words"})])
    assert (result.status, result.err) == expected
    assert result.retry_after is None
    assert SHOP_TOKEN not in caplog.text and "private words" not in caplog.text


async def test_too_many_requests_is_retried(channel: ViberBotChannel, upstream: FakeUpstream,
                                            subscribed: RecordingSink) -> None:
    upstream.handler = lambda _r: ok_json({"status": 12, "status_message": "Too many requests"})
    [result] = await channel.send([outbound({"text": "x"})])
    assert result.retry_after == 60.0 and result.status is None
    upstream.handler = lambda _r: ok_json({}, 503)
    [result] = await channel.send([outbound({"text": "x"})])
    assert result.retry_after == 5.0


# --- webhooks ----------------------------------------------------------------------------------


@pytest.fixture
async def hooks(channel: ViberBotChannel) -> AsyncIterator[httpx.AsyncClient]:
    server = await webhook_server(channel.routes(), "/webhooks/viber_bot").start()
    try:
        async with httpx.AsyncClient(base_url=f"{server.url}/webhooks/viber_bot",
                                     timeout=5) as client:
            yield client
    finally:
        await server.stop()


async def post_signed(hooks: httpx.AsyncClient, path: str, event: dict[str, Any],
                      token: str | None = SHOP_TOKEN) -> httpx.Response:
    body = dumps(event)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Viber-Content-Signature"] = hmac_hex(token.encode(), body)
    return await hooks.post(path, content=body, headers=headers)


async def test_delivery_callbacks(hooks: httpx.AsyncClient, sink: RecordingSink) -> None:
    events = [
        {"event": "delivered", "timestamp": 1457764197627, "message_token": 4912661846655238145,
         "user_id": USER},
        {"event": "seen", "timestamp": 1457764197628, "message_token": 4912661846655238145,
         "user_id": USER},
        {"event": "failed", "timestamp": 1457764197629, "message_token": 4912661846655238146,
         "user_id": USER, "desc": "failure desc"},
    ]
    for event in events:
        assert (await post_signed(hooks, "/MyShop", event)).status_code == 200
    got = [(r.channel, r.status, r.provider_ref, r.err, r.message_id) for r in sink.reports]
    assert got == [
        ("viber", Status.DELIVRD, "4912661846655238145", Err.NO_ERROR, None),
        ("viber", Status.SEEN, "4912661846655238145", Err.SEEN, None),
        ("viber", Status.FAILED, "4912661846655238146", Err.DELIVERY_FAILURE, None),
    ]
    assert sink.reports[2].error == "Viber: failure desc"
    occurred = sink.reports[0].occurred_at
    assert occurred is not None and occurred.isoformat() == "2016-03-12T06:29:57.627000"


async def test_shared_contact_registers_a_subscriber(hooks: httpx.AsyncClient,
                                                     sink: RecordingSink) -> None:
    event = {"event": "message", "timestamp": 1457764197627, "message_token": 1,
             "sender": {"id": USER, "name": "John", "api_version": 7},
             "message": {"type": "contact", "contact": {"name": "John",
                                                        "phone_number": "372 5678 9012"}}}
    assert (await post_signed(hooks, "/", event)).status_code == 200  # "/" = default bot
    news = {**event, "sender": {"id": "NEWSUSER=", "name": "John"}}
    assert (await post_signed(hooks, "/News", news, NEWS_TOKEN)).status_code == 200
    assert sink.subscribers == {("viber_bot:MyShop", PHONE): USER,
                                ("viber_bot:News", PHONE): "NEWSUSER="}


async def test_inbound_text_and_welcome(hooks: httpx.AsyncClient, sink: RecordingSink) -> None:
    text = {"event": "message", "timestamp": 1457764197627, "message_token": 77,
            "sender": {"id": USER, "name": "John"}, "message": {"type": "text", "text": "hi"}}
    assert (await post_signed(hooks, "/MyShop", text)).status_code == 200
    [inbound] = sink.inbound
    assert (inbound.channel, inbound.sender, inbound.recipient, inbound.text) == \
        ("viber", f"viber:{USER}", "MyShop", "hi")

    started = {"event": "conversation_started", "timestamp": 1457764197627,
               "message_token": 78, "type": "open", "user": {"id": USER, "name": "John"},
               "subscribed": False}
    welcome = await post_signed(hooks, "/MyShop", started)
    assert welcome.status_code == 200
    body = welcome.json()
    assert body["text"] == "Hi! Share your number."
    assert body["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    no_welcome = await post_signed(hooks, "/News", started, NEWS_TOKEN)
    assert no_welcome.status_code == 200 and no_welcome.text == "ok"
    webhook_check = {"event": "webhook", "timestamp": 1457764197627, "message_token": 1}
    assert (await post_signed(hooks, "/MyShop", webhook_check)).status_code == 200


@pytest.mark.parametrize(("path", "token", "code"), [
    ("/MyShop", None, 401),
    ("/MyShop", "wrong-token", 403),
    ("/MyShop", NEWS_TOKEN, 403),  # another bot's token does not sign for this bot
    ("/", NEWS_TOKEN, 403),
    ("/Nobody", SHOP_TOKEN, 404),
])
async def test_bad_signatures_are_refused(hooks: httpx.AsyncClient, sink: RecordingSink,
                                          path: str, token: str | None, code: int) -> None:
    for event in (
        {"event": "delivered", "timestamp": 1, "message_token": 1, "user_id": USER},
        {"event": "message", "timestamp": 1, "message_token": 2, "sender": {"id": USER},
         "message": {"type": "contact", "contact": {"phone_number": "+1555"}}},
        {"event": "message", "timestamp": 1, "message_token": 3, "sender": {"id": USER},
         "message": {"type": "text", "text": "x"}},
    ):
        assert (await post_signed(hooks, path, event, token)).status_code == code
    assert sink.empty


# --- configuration -----------------------------------------------------------------------------


def test_settings_and_registry() -> None:
    settings = ViberBotSettings.from_mapping({"senders": {"Shop": {"auth_token": "tok-SECRET"}}})
    assert settings.base_url == "https://chatapi.viber.com"
    assert settings.senders.default == "Shop"
    assert settings.senders["Shop"].name == "Shop"
    assert "SECRET" not in repr(settings)
    with pytest.raises(ConfigError, match="auth_token is required"):
        ViberBotSettings.from_mapping({"senders": {"Shop": {}}})
    with pytest.raises(ConfigError, match="at most 28"):
        ViberBotSettings.from_mapping({"senders": {"Shop": {"auth_token": "t",
                                                            "name": "x" * 29}}})
    with pytest.raises(ConfigError, match="unknown setting"):
        ViberBotSettings.from_mapping({"senders": {"Shop": {"auth_token": "t", "tokn": "x"}}})
    with pytest.raises(ConfigError, match="senders"):
        ViberBotSettings.from_mapping({})
    with pytest.raises(ConfigError, match="unknown Viber provider"):
        create_channel({"type": "viber_infobip", "senders": {"S": {"auth_token": "t"}}})
    assert set(PROVIDERS) == {"viber_bot"}
    named = create_channel({"type": "viber_bot", "senders": {"S": {"auth_token": "t"}}},
                           name="viber_main")
    assert named.name == "viber_main"


async def test_register_webhooks(channel: ViberBotChannel, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: ok_json(
        {"status": 0, "status_message": "ok", "event_types": r.json()["event_types"]}
        if r.headers["x-viber-auth-token"] == SHOP_TOKEN else
        {"status": 2, "status_message": "invalidAuthToken"})
    problems = await channel.register_webhooks("https://gw.example.com/")
    assert problems == {"News": "Viber status 2: invalidAuthToken"}
    shop = upstream.requests[0]
    assert shop.path == "/pa/set_webhook"
    assert shop.json()["url"] == "https://gw.example.com/webhooks/viber_bot/MyShop"
    assert set(shop.json()["event_types"]) >= {"delivered", "seen", "failed",
                                                "conversation_started"}
