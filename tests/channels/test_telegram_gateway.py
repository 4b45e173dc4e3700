"""Telegram Gateway provider against a fake gatewayapi.telegram.org and its report route."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from omnirelay.channels.base import OutboundMessage
from omnirelay.channels.telegram import (
    TelegramGatewayChannel,
    TelegramGatewaySettings,
    create_channel,
)
from omnirelay.channels.telegram.gateway import extract_code
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import utcnow
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

TOKEN = "AAGateway-token-xyz"
PHONE = "+37256789012"
PUBLIC = "https://gw.example.com"


def outbound(content: dict[str, Any], *, message_id: str = "m-1",
             ttl_seconds: int | None = 600) -> OutboundMessage:
    deadline = utcnow() + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None
    return OutboundMessage(message_id=message_id, omnimessage_id="om-1", account_id=1,
                           channel="telegram", to=PHONE, sender="Acme", content=content,
                           deadline=deadline)


def request_status(request: Recorded) -> Any:
    body = request.json()
    return ok_json({"ok": True, "result": {
        "request_id": f"req-{body['payload']}", "phone_number": body["phone_number"].lstrip("+"),
        "request_cost": 0.01, "remaining_balance": 9.99,
        "delivery_status": {"status": "sent", "updated_at": 1700000000},
        "payload": body["payload"]}})


@pytest.fixture
async def channel(upstream: FakeUpstream, sink: RecordingSink
                  ) -> AsyncIterator[TelegramGatewayChannel]:
    ch = create_channel({"type": "telegram_gateway", "base_url": upstream.url,
                         "access_token": TOKEN, "timeout": 5.0},
                        name="telegram_gateway", public_url=PUBLIC)
    assert isinstance(ch, TelegramGatewayChannel)
    await ch.start(sink)
    try:
        yield ch
    finally:
        await ch.stop()


async def test_code_is_sent_as_the_gateway_prescribes(channel: TelegramGatewayChannel,
                                                      upstream: FakeUpstream) -> None:
    upstream.handler = request_status
    [result] = await channel.send([outbound({"text": "Your code is 482910. Valid 10 min"})])
    assert result.provider_refs == ("req-m-1",)
    assert result.status is None and result.retry_after is None
    [request] = upstream.requests
    assert (request.method, request.path) == ("POST", "/sendVerificationMessage")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    body = request.json()
    assert 590 <= body.pop("ttl") <= 600
    assert body == {"phone_number": PHONE, "code": "482910", "payload": "m-1",
                    "callback_url": f"{PUBLIC}/webhooks/telegram_gateway/"}


async def test_ttl_is_clamped(channel: TelegramGatewayChannel, upstream: FakeUpstream) -> None:
    upstream.handler = request_status
    await channel.send([outbound({"text": "1234"}, message_id="a", ttl_seconds=5),
                        outbound({"text": "1234"}, message_id="b", ttl_seconds=86400),
                        outbound({"text": "1234"}, message_id="c", ttl_seconds=None)])
    ttl = {r.json()["payload"]: r.json().get("ttl") for r in upstream.requests}
    assert ttl == {"a": 30, "b": 3600, "c": None}


async def test_content_without_one_code_is_unroutable(channel: TelegramGatewayChannel,
                                                      upstream: FakeUpstream) -> None:
    results = await channel.send([
        outbound({"text": "Hello there"}, message_id="a"),
        outbound({"text": "Code 1234 or 5678"}, message_id="b"),
        outbound({"text": "1234", "image_url": "https://x/p.png"}, message_id="c"),
    ])
    assert {(r.status, r.err) for r in results} == {(Status.FAILED, Err.UNROUTABLE)}
    assert upstream.requests == []


def test_extract_code() -> None:
    assert extract_code({"text": "G-123456 is your code"}) == "123456"
    assert extract_code({"code": "0042"}) == "0042"
    with pytest.raises(ValueError):
        extract_code({"text": "123"})
    with pytest.raises(ValueError):
        extract_code({"text": "123456789"})


@pytest.mark.parametrize(("status", "error", "expected"), [
    (400, "PHONE_NUMBER_INVALID", (Status.REJECTD, Err.INVALID_NUMBER_FORMAT, None)),
    (400, "PHONE_NUMBER_NOT_AVAILABLE", (Status.REJECTD, Err.UNROUTABLE, None)),
    (401, "ACCESS_TOKEN_INVALID", (Status.FAILED, Err.TEMPORARY, None)),
    (400, "BALANCE_NOT_ENOUGH", (Status.FAILED, Err.CREDITING, None)),
    (429, "FLOOD_WAIT_12", (None, None, 12.0)),
    (500, "INTERNAL", (None, None, 5.0)),
])
async def test_error_answers(channel: TelegramGatewayChannel, upstream: FakeUpstream,
                             caplog: pytest.LogCaptureFixture, status: int, error: str,
                             expected: tuple[Status | None, Err | None, float | None]) -> None:
    upstream.handler = lambda _r: ok_json({"ok": False, "error": error}, status)
    [result] = await channel.send([outbound({"text": "code 9876"})])
    assert (result.status, result.err, result.retry_after) == expected
    assert TOKEN not in caplog.text


# --- delivery reports --------------------------------------------------------------------------


@pytest.fixture
async def hooks(channel: TelegramGatewayChannel) -> AsyncIterator[httpx.AsyncClient]:
    server = await webhook_server(channel.routes(), "/webhooks/telegram_gateway").start()
    try:
        async with httpx.AsyncClient(base_url=f"{server.url}/webhooks/telegram_gateway",
                                     timeout=5) as client:
            yield client
    finally:
        await server.stop()


def report(status: str, payload: str | None = "m-1") -> dict[str, Any]:
    body: dict[str, Any] = {"request_id": "req-1", "phone_number": "37256789012",
                            "request_cost": 0.01,
                            "delivery_status": {"status": status, "updated_at": 1700000000}}
    if payload is not None:
        body["payload"] = payload
    return body


async def post_signed(hooks: httpx.AsyncClient, body: dict[str, Any], *,
                      token: str = TOKEN, timestamp: int | None = None,
                      headers: bool = True) -> httpx.Response:
    raw = dumps(body)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = hashlib.sha256(token.encode()).digest()
    extra = {"X-Request-Timestamp": ts,
             "X-Request-Signature": hmac_hex(key, ts.encode() + b"\n" + raw)} if headers else {}
    return await hooks.post("/", content=raw,
                            headers={"Content-Type": "application/json", **extra})


async def test_reports_are_mapped(hooks: httpx.AsyncClient, sink: RecordingSink) -> None:
    for status in ("sent", "delivered", "read", "expired", "revoked"):
        assert (await post_signed(hooks, report(status))).status_code == 200
    assert (await post_signed(hooks, report("delivered", payload=None))).status_code == 200
    verification_only = {"request_id": "req-1", "phone_number": "1", "request_cost": 0,
                         "verification_status": {"status": "code_valid", "updated_at": 1}}
    assert (await post_signed(hooks, verification_only)).status_code == 200
    got = [(r.channel, r.status, r.err, r.message_id, r.provider_ref) for r in sink.reports]
    assert got == [
        ("telegram", Status.ACK, None, "m-1", "req-1"),
        ("telegram", Status.DELIVRD, Err.NO_ERROR, "m-1", "req-1"),
        ("telegram", Status.SEEN, Err.SEEN, "m-1", "req-1"),
        ("telegram", Status.EXPIRED, Err.EXPIRED, "m-1", "req-1"),
        ("telegram", Status.DELETED, Err.DELIVERY_FAILURE, "m-1", "req-1"),
        ("telegram", Status.DELIVRD, Err.NO_ERROR, None, "req-1"),
    ]
    occurred = sink.reports[0].occurred_at
    assert occurred is not None and occurred.isoformat() == "2023-11-14T22:13:20"


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"headers": False}, 401),
    ({"token": "another-token"}, 403),
    ({"timestamp": int(time.time()) - 3600}, 403),  # replayed
    ({"timestamp": int(time.time()) + 3600}, 403),
])
async def test_bad_signatures_are_refused(hooks: httpx.AsyncClient, sink: RecordingSink,
                                          kwargs: dict[str, Any], code: int) -> None:
    assert (await post_signed(hooks, report("delivered"), **kwargs)).status_code == code
    assert sink.empty


async def test_signature_hex_key_variant_is_refused(hooks: httpx.AsyncClient,
                                                    sink: RecordingSink) -> None:
    """Pins the reading chosen for the ambiguous spec: the key is the raw SHA-256 digest."""
    raw = dumps(report("delivered"))
    ts = str(int(time.time()))
    hex_key = hashlib.sha256(TOKEN.encode()).hexdigest().encode()
    response = await hooks.post("/", content=raw, headers={
        "X-Request-Timestamp": ts,
        "X-Request-Signature": hmac_hex(hex_key, ts.encode() + b"\n" + raw)})
    assert response.status_code == 403
    assert sink.empty


# --- configuration -----------------------------------------------------------------------------


def test_settings() -> None:
    plain = TelegramGatewaySettings.from_mapping({"access_token": "tok-SECRET"})
    assert plain.base_url == "https://gatewayapi.telegram.org"
    assert plain.callback_url is None
    assert "SECRET" not in repr(plain)
    derived = TelegramGatewaySettings.from_mapping({"access_token": "t"}, "tg_codes",
                                                   public_url="https://gw.example.com/")
    assert derived.callback_url == "https://gw.example.com/webhooks/tg_codes/"
    disabled = TelegramGatewaySettings.from_mapping({"access_token": "t", "callback_url": ""},
                                                    public_url="https://gw.example.com")
    assert disabled.callback_url is None
    with pytest.raises(ConfigError, match="access_token is required"):
        TelegramGatewaySettings.from_mapping({})
    with pytest.raises(ConfigError, match="unknown setting"):
        TelegramGatewaySettings.from_mapping({"access_token": "t", "ttl": 60})
