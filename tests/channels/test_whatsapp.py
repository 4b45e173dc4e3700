"""WhatsApp Cloud API provider against a fake Graph API and through its real webhook routes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from omnirelay.channels.base import OutboundMessage
from omnirelay.channels.whatsapp import WhatsAppCloudChannel, WhatsAppSettings, create_channel
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

TOKEN = "EAAG-secret-access-token"
APP_SECRET = "app-secret-123"
VERIFY = "verify-me"
PHONE_ID = "1122334455667"
OTHER_ID = "9988776655443"


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": base_url, "api_version": "v21.0", "access_token": TOKEN,
            "app_secret": APP_SECRET, "verify_token": VERIFY,
            "senders": {"+37255550000": PHONE_ID, "+37255550001": OTHER_ID},
            "default_sender": "+37255550000", "timeout": 5.0, **extra}


def outbound(content: dict[str, Any], *, message_id: str = "m-1", sender: str = "+37255550000",
             to: str = "+37256789012") -> OutboundMessage:
    return OutboundMessage(message_id=message_id, omnimessage_id="om-1", account_id=1,
                           channel="whatsapp", to=to, sender=sender, content=content)


def accepted(request: Recorded) -> Any:
    to = request.json()["to"]
    return ok_json({"messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": f"wamid.{request.json()['biz_opaque_callback_data']}",
                                  "message_status": "accepted"}]})


@pytest.fixture
async def channel(upstream: FakeUpstream, sink: RecordingSink
                  ) -> AsyncIterator[WhatsAppCloudChannel]:
    ch = create_channel(config(upstream.url))
    assert isinstance(ch, WhatsAppCloudChannel)
    await ch.start(sink)
    try:
        yield ch
    finally:
        await ch.stop()


# --- sending -----------------------------------------------------------------------------------


async def test_template_goes_out_as_meta_prescribes(channel: WhatsAppCloudChannel,
                                                    upstream: FakeUpstream) -> None:
    upstream.handler = accepted
    template: dict[str, Any] = {
                "name": "order_update", "language": {"code": "en_US", "policy": "deterministic"},
                "components": [
                    {"type": "header", "parameters": [
                        {"type": "document", "document": {"link": "https://x/y.pdf",
                                                          "file_name": "y.pdf"}}]},
                    {"type": "body", "parameters": [
                        {"type": "text", "text": "Alice"},
                        {"type": "currency", "currency": {"fallback_value": "$1.50",
                                                          "code": "USD", "amount_1000": "1500"}},
                        {"type": "date_time", "date_time": {"fallback_value": "Jan 1, 2025"}}]},
                    {"type": "button", "sub_type": "quick_reply", "index": 1,
                     "parameters": [{"type": "payload", "payload": "YES"}]}]}
    [result] = await channel.send([outbound({"template": template})])

    assert result.provider_refs == ("wamid.m-1",)
    assert result.status is None and result.retry_after is None
    [request] = upstream.requests
    assert request.method == "POST"
    assert request.path == f"/v21.0/{PHONE_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    expected_template = {**template, "components": [
        {"type": "header", "parameters": [
            {"type": "document", "document": {"link": "https://x/y.pdf", "filename": "y.pdf"}}]},
        {"type": "body", "parameters": [
            {"type": "text", "text": "Alice"},
            {"type": "currency", "currency": {"fallback_value": "$1.50", "code": "USD",
                                              "amount_1000": 1500}},
            {"type": "date_time", "date_time": {"fallback_value": "Jan 1, 2025"}}]},
        template["components"][2]]}
    assert request.json() == {"messaging_product": "whatsapp", "recipient_type": "individual",
                              "to": "37256789012", "type": "template",
                              "template": expected_template,
                              "biz_opaque_callback_data": "m-1"}


@pytest.mark.parametrize(("content", "kind", "expected"), [
    ({"text": {"body": "hi"}}, "text", {"body": "hi", "preview_url": True}),
    ({"text": {"body": "hi", "preview_url": False}}, "text", {"body": "hi", "preview_url": False}),
    ({"image": {"link": "https://x/a.png", "caption": "c", "mime_type": "image/png"}}, "image",
     {"link": "https://x/a.png", "caption": "c"}),
    ({"video": {"id": "123", "caption": "v", "mime_type": "video/mp4"}}, "video",
     {"id": "123", "caption": "v"}),
    ({"audio": {"link": "https://x/a.ogg", "mime_type": "audio/ogg"}}, "audio",
     {"link": "https://x/a.ogg"}),
    ({"document": {"link": "https://x/d.pdf", "caption": "d", "file_name": "d.pdf",
                   "mime_type": "application/pdf"}}, "document",
     {"link": "https://x/d.pdf", "caption": "d", "filename": "d.pdf"}),
    ({"sticker": {"id": "55", "animated": True, "mime_type": "image/webp"}}, "sticker",
     {"id": "55"}),
])
async def test_session_content_maps_onto_cloud_api_fields(
        channel: WhatsAppCloudChannel, upstream: FakeUpstream, content: dict[str, Any],
        kind: str, expected: dict[str, Any]) -> None:
    upstream.handler = accepted
    [result] = await channel.send([outbound(content)])
    assert result.provider_refs == ("wamid.m-1",)
    body = upstream.requests[0].json()
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual",
                    "to": "37256789012", "type": kind, kind: expected,
                    "biz_opaque_callback_data": "m-1"}


async def test_sender_picks_the_phone_number_id(channel: WhatsAppCloudChannel,
                                                upstream: FakeUpstream) -> None:
    upstream.handler = accepted
    results = await channel.send([
        outbound({"text": {"body": "a"}}, message_id="a", sender="+372 5555 0001"),
        outbound({"text": {"body": "b"}}, message_id="b", sender="Acme"),  # not a WA sender
    ])
    assert sorted(r.provider_refs for r in results) == [("wamid.a",), ("wamid.b",)]
    paths = {r.json()["biz_opaque_callback_data"]: r.path for r in upstream.requests}
    assert paths == {"a": f"/v21.0/{OTHER_ID}/messages", "b": f"/v21.0/{PHONE_ID}/messages"}


def graph_error(code: int, message: str, status: int = 400,
                headers: dict[str, str] | None = None) -> Any:
    return ok_json({"error": {"message": f"(#{code}) {message}", "type": "OAuthException",
                              "code": code, "error_data": {"messaging_product": "whatsapp",
                                                           "details": message},
                              "fbtrace_id": "Axyz"}}, status, headers)


async def test_invalid_number_is_terminal_at_once(channel: WhatsAppCloudChannel,
                                                  upstream: FakeUpstream) -> None:
    upstream.handler = lambda _r: graph_error(131026, "Message undeliverable")
    [result] = await channel.send([outbound({"text": {"body": "x"}})])
    assert result.status == Status.REJECTD
    assert result.err == Err.INVALID_NUMBER
    assert result.retry_after is None
    assert "131026" in (result.error or "")


@pytest.mark.parametrize(("code", "status", "headers", "wait"), [
    (130429, 400, None, 1.0),
    (131056, 400, None, 6.0),
    (131048, 400, None, 60.0),
    (80007, 400, None, 60.0),
    (4, 429, {"Retry-After": "7"}, 7.0),
])
async def test_rate_limits_ask_for_a_retry(channel: WhatsAppCloudChannel, upstream: FakeUpstream,
                                           code: int, status: int,
                                           headers: dict[str, str] | None, wait: float) -> None:
    upstream.handler = lambda _r: graph_error(code, "Rate limit hit", status, headers)
    [result] = await channel.send([outbound({"text": {"body": "x"}})])
    assert result.retry_after == wait
    assert result.status is None


async def test_auth_error_fails_and_logs_without_the_token(
        channel: WhatsAppCloudChannel, upstream: FakeUpstream,
        caplog: pytest.LogCaptureFixture) -> None:
    upstream.handler = lambda _r: graph_error(190, "Error validating access token", 401)
    with caplog.at_level(logging.INFO):
        [result] = await channel.send([outbound({"text": {"body": "secret text"}})])
    assert result.status == Status.FAILED
    assert result.err == Err.TEMPORARY
    assert "access_token" in caplog.text
    assert TOKEN not in caplog.text
    assert "secret text" not in caplog.text


async def test_server_error_and_unreachable_upstream_are_retried(
        channel: WhatsAppCloudChannel, upstream: FakeUpstream, sink: RecordingSink) -> None:
    upstream.handler = lambda _r: ok_json({"error": {"message": "oops", "code": 2}}, 503)
    [result] = await channel.send([outbound({"text": {"body": "x"}})])
    assert result.retry_after == 5.0

    dead = create_channel(config("http://127.0.0.1:9"))  # nothing listens on the discard port
    await dead.start(sink)
    try:
        [result] = await dead.send([outbound({"text": {"body": "x"}})])
    finally:
        await dead.stop()
    assert result.retry_after is not None and result.status is None


async def test_content_without_whatsapp_parts_is_rejected(channel: WhatsAppCloudChannel,
                                                          upstream: FakeUpstream) -> None:
    [result] = await channel.send([outbound({"viber": "x"})])
    assert result.status == Status.REJECTD
    assert upstream.requests == []


# --- webhooks ----------------------------------------------------------------------------------


@pytest.fixture
async def hooks(channel: WhatsAppCloudChannel) -> AsyncIterator[httpx.AsyncClient]:
    server = await webhook_server(channel.routes(), "/webhooks/whatsapp_cloud").start()
    try:
        async with httpx.AsyncClient(base_url=f"{server.url}/webhooks/whatsapp_cloud",
                                     timeout=5) as client:
            yield client
    finally:
        await server.stop()


async def test_handshake_echoes_the_challenge(hooks: httpx.AsyncClient) -> None:
    ok = await hooks.get("/", params={"hub.mode": "subscribe", "hub.verify_token": VERIFY,
                                      "hub.challenge": "1158201444"})
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    wrong = await hooks.get("/", params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                         "hub.challenge": "1"})
    assert wrong.status_code == 403
    no_mode = await hooks.get("/", params={"hub.verify_token": VERIFY, "hub.challenge": "1"})
    assert no_mode.status_code == 403


def notification(value: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "37255550000", "phone_number_id": PHONE_ID},
            **value}}]}]}


def status(kind: str, ref: str, ours: str | None = None, **extra: Any) -> dict[str, Any]:
    item = {"id": ref, "status": kind, "timestamp": "1698266945",
            "recipient_id": "37256789012", **extra}
    if ours is not None:
        item["biz_opaque_callback_data"] = ours
    return item


async def post_signed(hooks: httpx.AsyncClient, payload: Any,
                      signature: str | None = "good") -> httpx.Response:
    body = dumps(payload)
    headers = {"Content-Type": "application/json"}
    if signature == "good":
        headers["X-Hub-Signature-256"] = "sha256=" + hmac_hex(APP_SECRET.encode(), body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await hooks.post("/", content=body, headers=headers)


async def test_statuses_are_reported(hooks: httpx.AsyncClient, sink: RecordingSink) -> None:
    failed = status("failed", "wamid.D", errors=[{"code": 131026, "title": "Message undeliverable",
                                                  "message": "Message undeliverable"}])
    payload = notification({"statuses": [
        status("sent", "wamid.A", "m-a"), status("delivered", "wamid.A", "m-a"),
        status("read", "wamid.B", "m-b"), status("delivered", "wamid.C"), failed,
        status("failed", "wamid.E", "m-e", errors=[{"code": 131047, "title": "Re-engagement"}]),
        status("deleted", "wamid.F", "m-f"),  # not a delivery status: ignored
    ]})
    response = await post_signed(hooks, payload)
    assert response.status_code == 200
    seen = [(r.status, r.message_id, r.provider_ref, r.err) for r in sink.reports]
    assert seen == [
        (Status.ACK, "m-a", "wamid.A", None),
        (Status.DELIVRD, "m-a", "wamid.A", Err.NO_ERROR),
        (Status.SEEN, "m-b", "wamid.B", Err.SEEN),
        (Status.DELIVRD, None, "wamid.C", Err.NO_ERROR),
        (Status.FAILED, None, "wamid.D", Err.INVALID_NUMBER),
        (Status.FAILED, "m-e", "wamid.E", Err.DELIVERY_FAILURE),
    ]
    assert all(r.channel == "whatsapp" for r in sink.reports)
    assert sink.reports[0].occurred_at is not None
    assert sink.reports[0].occurred_at.isoformat() == "2023-10-25T20:49:05"
    assert "131026" in (sink.reports[4].error or "")


async def test_inbound_messages_are_received(hooks: httpx.AsyncClient,
                                             sink: RecordingSink) -> None:
    payload = notification({
        "contacts": [{"profile": {"name": "Muath"}, "wa_id": "37256789012"}],
        "messages": [
            {"from": "37256789012", "id": "wamid.IN1", "timestamp": "1603059201", "type": "text",
             "text": {"body": "Hello"}},
            {"from": "37256789012", "id": "wamid.IN2", "timestamp": "1603059202",
             "type": "image", "image": {"id": "m1", "mime_type": "image/jpeg",
                                        "caption": "look"}},
            {"from": "37256789012", "id": "wamid.IN3", "timestamp": "1603059203",
             "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "+"}},
        ]})
    response = await post_signed(hooks, payload)
    assert response.status_code == 200
    got = [(m.channel, m.sender, m.recipient, m.text, m.provider_ref) for m in sink.inbound]
    assert got == [("whatsapp", "+37256789012", "+37255550000", "Hello", "wamid.IN1"),
                   ("whatsapp", "+37256789012", "+37255550000", "[image] look", "wamid.IN2")]


async def test_inbound_to_an_unconfigured_number_names_the_display_number(
        hooks: httpx.AsyncClient, sink: RecordingSink) -> None:
    payload = notification({"messages": [{"from": "1555", "id": "wamid.Z", "timestamp": "1",
                                          "type": "text", "text": {"body": "x"}}]})
    payload["entry"][0]["changes"][0]["value"]["metadata"] = {
        "display_phone_number": "15550001111", "phone_number_id": "000"}
    assert (await post_signed(hooks, payload)).status_code == 200
    assert sink.inbound[0].recipient == "+15550001111"


@pytest.mark.parametrize(("signature", "code"), [
    (None, 401),
    ("sha256=" + "0" * 64, 403),
    ("sha256=nothex", 403),
    ("0" * 64, 403),
])
async def test_bad_signatures_are_refused_and_nothing_recorded(
        hooks: httpx.AsyncClient, sink: RecordingSink, signature: str | None, code: int) -> None:
    payload = notification({"statuses": [status("delivered", "wamid.A", "m-a")],
                            "messages": [{"from": "1", "id": "w", "timestamp": "1",
                                          "type": "text", "text": {"body": "x"}}]})
    response = await post_signed(hooks, payload, signature)
    assert response.status_code == code
    assert sink.empty


async def test_signature_is_over_the_raw_bytes(hooks: httpx.AsyncClient,
                                               sink: RecordingSink) -> None:
    """A body signed as sent but re-serialised differently must not pass: sign spaced JSON,
    send compact JSON."""
    payload = notification({"statuses": [status("delivered", "wamid.A", "m-a")]})
    spaced = json.dumps(payload).encode()
    signature = "sha256=" + hmac_hex(APP_SECRET.encode(), spaced)
    response = await post_signed(hooks, payload, signature)
    assert response.status_code == 403
    assert sink.empty


# --- configuration -----------------------------------------------------------------------------


def test_settings_defaults_and_errors() -> None:
    settings = WhatsAppSettings.from_mapping({
        "access_token": "tok-SECRET", "app_secret": "app-SECRET", "verify_token": "v-SECRET",
        "senders": {"+3725": 123}, "type": "whatsapp_cloud"})
    assert settings.base_url == "https://graph.facebook.com"
    assert settings.api_version == "v21.0"
    assert settings.senders.default == "+3725"
    assert settings.senders["+3725"] == "123"
    assert "SECRET" not in repr(settings)

    with pytest.raises(ConfigError, match="access_token is required"):
        WhatsAppSettings.from_mapping({"app_secret": "s", "verify_token": "v",
                                       "senders": {"+3725": "1"}})
    with pytest.raises(ConfigError, match="default_sender is required"):
        WhatsAppSettings.from_mapping(config("https://graph.facebook.com",
                                             default_sender=None))
    with pytest.raises(ConfigError, match="unknown setting"):
        WhatsAppSettings.from_mapping(config("https://graph.facebook.com", acess_token="x"))
    with pytest.raises(ConfigError, match="base_url"):
        WhatsAppSettings.from_mapping(config("graph.facebook.com"))
    assert WhatsAppSettings.from_mapping(
        config("https://graph.facebook.com", api_version="22.0")).api_version == "v22.0"
