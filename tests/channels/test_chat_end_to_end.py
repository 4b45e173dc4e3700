"""The chat providers end to end: the real app and engine against fake upstreams on 127.0.0.1.

Messages go in through the Messente API; the gateway sends them to a fake Graph API (WhatsApp
Cloud), a fake Viber Bot API and a fake Telegram Gateway; the tests then play the upstream and
POST signed status callbacks to the app's own webhook endpoints (/webhooks/<provider>/). What the
app made of them is read back through the status API, the delivery reports a real receiver
gets, and the database. SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import Connection, func, select

from omnirelay.store.queries import Account
from omnirelay.store.tables import (
    attempts,
    inbound_messages,
    provider_refs,
    status_events,
    unmatched_reports,
    webhooks,
)
from tests.channels.fake_upstreams import (
    ThreadedUpstream,
    ViberTokens,
    gateway_accepts,
    graph_accepts,
)
from tests.support import (
    LiveServer,
    Received,
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

TO = "+37256789012"  # the sandbox delivers SMS to it (not a 999x/998x number)

WA_NUMBER = "+37255550000"  # our WhatsApp business number
WA_PHONE_ID = "1122334455667"
WA_APP_SECRET = "wa-app-secret"
VIBER_BOT = "shop"
VIBER_TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
VIBER_USER = "01234567890A="
TG_TOKEN = "AAGateway-token-xyz"

HTTP_TIMEOUT = 10.0


# --- the gateway and its upstreams ----------------------------------------------------------------


@dataclass
class Upstreams:
    graph: ThreadedUpstream
    viber: ThreadedUpstream
    telegram: ThreadedUpstream


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    started: list[ThreadedUpstream] = []
    try:
        for handler in (graph_accepts, ViberTokens(), gateway_accepts):
            started.append(ThreadedUpstream(handler).start())
        yield Upstreams(*started)
    finally:
        for upstream in started:
            upstream.stop()


@pytest.fixture
def gateway(database_url: str, upstreams: Upstreams) -> Iterator[LiveServer]:
    settings = make_settings(
        database_url,
        channels={"viber": "viber_bot", "whatsapp": "whatsapp_cloud",
                  "telegram": "telegram_gateway"},
        providers={
            "whatsapp_cloud": {"base_url": upstreams.graph.url, "access_token": "EAAG-token",
                               "app_secret": WA_APP_SECRET, "verify_token": "verify-me",
                               "senders": {WA_NUMBER: WA_PHONE_ID}, "timeout": 5.0},
            "viber_bot": {"base_url": upstreams.viber.url, "timeout": 5.0,
                          "senders": {VIBER_BOT: {"auth_token": VIBER_TOKEN, "name": "Shop"}}},
            "telegram_gateway": {"base_url": upstreams.telegram.url, "access_token": TG_TOKEN,
                                 "timeout": 5.0},
        },
        webhooks={"backoff_base": 0.2, "backoff_factor": 1.5, "jitter": 0.1})
    live = start_live_server(settings)
    yield live
    live.stop()


@pytest.fixture
def account(gateway: LiveServer, receiver: WebhookReceiver) -> Account:
    return gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr",
                                       inbound_url=receiver.url + "/inbound"))


# --- helpers: the Messente API --------------------------------------------------------------------


def send(gateway: LiveServer, account: Account, *variants: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{gateway.base_url}/v1/omnimessage",
                          json={"to": TO, "messages": list(variants)},
                          auth=(account.api_username, account.api_password), timeout=HTTP_TIMEOUT)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def statuses(gateway: LiveServer, account: Account, omnimessage_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.base_url}/v1/omnimessage/{omnimessage_id}/status",
                         auth=(account.api_username, account.api_password), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()["statuses"]  # type: ignore[no-any-return]


def outcomes(gateway: LiveServer, account: Account, omnimessage_id: str
             ) -> list[tuple[str, str | None, int | None]]:
    return [(s["channel"], s["status"], s["err"])
            for s in statuses(gateway, account, omnimessage_id)]


def signed_by(received: Received, secret: str) -> bool:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers.get("X-Messente-Signature", ""), expected)


# --- helpers: the database ------------------------------------------------------------------------


def read(gateway: LiveServer, query: Any) -> Any:
    def work(conn: Connection) -> Any:
        return conn.execute(query).all()

    return gateway.call(gateway.runtime.db.read(work))


def count(gateway: LiveServer, table: Any, *where: Any) -> int:
    return int(read(gateway, select(func.count()).select_from(table).where(*where))[0][0])


def provider_ref_once_sent(gateway: LiveServer, message_id: str) -> str:
    """Wait until the upstream has accepted the attempt and its ref is stored; return the ref."""
    def sent() -> bool:
        [(state,)] = read(gateway, select(attempts.c.state).where(attempts.c.id == message_id))
        return bool(state == "sent")

    wait_until(sent, timeout=15)
    [(ref,)] = read(gateway, select(provider_refs.c.ref)
                    .where(provider_refs.c.attempt_id == message_id))
    return str(ref)


@dataclass(frozen=True)
class Traces:
    """Everything a status callback could leave behind."""

    status_events: int
    webhooks: int
    unmatched_reports: int


def traces(gateway: LiveServer, message_id: str) -> Traces:
    return Traces(count(gateway, status_events, status_events.c.attempt_id == message_id),
                  count(gateway, webhooks), count(gateway, unmatched_reports))


# --- helpers: playing the upstream ----------------------------------------------------------------


def compact(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def hmac_hex(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def post_webhook(gateway: LiveServer, provider_path: str, body: bytes, headers: dict[str, str]
                 ) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/webhooks/{provider_path}", content=body,
                      headers={"Content-Type": "application/json", **headers},
                      timeout=HTTP_TIMEOUT)


class Upstream(Protocol):
    """One provider as seen from its upstream: what we send through it, and how it calls back."""

    provider: str
    channel: str
    secret: str
    variant: dict[str, Any]

    def prepare(self, gateway: LiveServer) -> None: ...

    def delivered(self, message_id: str, ref: str) -> bytes: ...

    def post(self, gateway: LiveServer, body: bytes, secret: str | None) -> httpx.Response: ...


class WhatsAppCloud:
    provider = "whatsapp_cloud"
    channel = "whatsapp"
    secret = WA_APP_SECRET
    variant: dict[str, Any] = {"channel": "whatsapp", "text": {"body": "Your order shipped"}}

    def prepare(self, gateway: LiveServer) -> None:
        pass

    @staticmethod
    def notification(value: dict[str, Any]) -> dict[str, Any]:
        return {"object": "whatsapp_business_account", "entry": [{"id": "WABA-ID", "changes": [
            {"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": WA_NUMBER.lstrip("+"),
                             "phone_number_id": WA_PHONE_ID},
                **value}}]}]}

    @staticmethod
    def status(kind: str, message_id: str, ref: str, **extra: Any) -> dict[str, Any]:
        return {"id": ref, "status": kind, "timestamp": str(int(time.time())),
                "recipient_id": TO.lstrip("+"), "biz_opaque_callback_data": message_id, **extra}

    def delivered(self, message_id: str, ref: str) -> bytes:
        return compact(self.notification({"statuses": [self.status("delivered", message_id, ref)]}))

    def failed(self, message_id: str, ref: str, code: int, title: str) -> bytes:
        errors = [{"code": code, "title": title, "message": title,
                   "error_data": {"details": title}}]
        return compact(self.notification({"statuses": [
            self.status("failed", message_id, ref, errors=errors)]}))

    def post(self, gateway: LiveServer, body: bytes, secret: str | None) -> httpx.Response:
        headers = {} if secret is None else {
            "X-Hub-Signature-256": "sha256=" + hmac_hex(secret.encode(), body)}
        return post_webhook(gateway, f"{self.provider}/", body, headers)


class ViberBot:
    provider = "viber_bot"
    channel = "viber"
    secret = VIBER_TOKEN
    variant: dict[str, Any] = {"channel": "viber", "text": "Your order shipped"}

    def prepare(self, gateway: LiveServer) -> None:
        """The user shares their phone number with the bot: Viber's contact message callback."""
        body = compact({
            "event": "message", "timestamp": int(time.time() * 1000),
            "chat_hostname": "SN-CHAT-05_", "message_token": 5741311803571700001,
            "sender": {"id": VIBER_USER, "name": "Jane", "language": "en", "country": "EE",
                       "api_version": 10},
            "message": {"type": "contact", "contact": {"name": "Jane",
                                                       "phone_number": TO.lstrip("+")}},
            "silent": False})
        assert self.post(gateway, body, self.secret).status_code == 200

    def delivered(self, message_id: str, ref: str) -> bytes:
        return compact({"event": "delivered", "timestamp": int(time.time() * 1000),
                        "chat_hostname": "SN-CHAT-05_", "message_token": int(ref),
                        "user_id": VIBER_USER})

    def post(self, gateway: LiveServer, body: bytes, secret: str | None) -> httpx.Response:
        headers = {} if secret is None else {
            "X-Viber-Content-Signature": hmac_hex(secret.encode(), body)}
        return post_webhook(gateway, f"{self.provider}/", body, headers)


class TelegramGateway:
    provider = "telegram_gateway"
    channel = "telegram"
    secret = TG_TOKEN
    variant: dict[str, Any] = {"channel": "telegram", "text": "Your code is 482910"}

    def prepare(self, gateway: LiveServer) -> None:
        pass

    def delivered(self, message_id: str, ref: str) -> bytes:
        return compact({"request_id": ref, "phone_number": TO.lstrip("+"), "request_cost": 0.01,
                        "delivery_status": {"status": "delivered",
                                            "updated_at": int(time.time())},
                        "payload": message_id})

    def post(self, gateway: LiveServer, body: bytes, secret: str | None) -> httpx.Response:
        """Signed as the Gateway signs: key SHA256(token), message timestamp + "\\n" + body."""
        headers = {}
        if secret is not None:
            timestamp = str(int(time.time()))
            key = hashlib.sha256(secret.encode()).digest()
            headers = {"X-Request-Timestamp": timestamp,
                       "X-Request-Signature": hmac_hex(key, timestamp.encode() + b"\n" + body)}
        return post_webhook(gateway, f"{self.provider}/", body, headers)


UPSTREAMS = [pytest.param(WhatsAppCloud(), id="whatsapp_cloud"),
             pytest.param(ViberBot(), id="viber_bot"),
             pytest.param(TelegramGateway(), id="telegram_gateway")]


def send_through(gateway: LiveServer, account: Account, upstream: Upstream) -> tuple[str, str, str]:
    """Send one message on the upstream's channel; (omnimessage id, message id, provider ref)
    once the upstream has accepted it."""
    upstream.prepare(gateway)
    sent = send(gateway, account, upstream.variant)
    [message] = sent["messages"]
    return sent["omnimessage_id"], message["message_id"], \
        provider_ref_once_sent(gateway, message["message_id"])


# --- 1. status callbacks --------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_signed_status_callback_is_recorded_and_reported(
        gateway: LiveServer, account: Account, receiver: WebhookReceiver,
        upstream: Upstream) -> None:
    omnimessage_id, message_id, ref = send_through(gateway, account, upstream)
    assert outcomes(gateway, account, omnimessage_id) == [(upstream.channel, None, None)]

    response = upstream.post(gateway, upstream.delivered(message_id, ref), upstream.secret)

    assert response.status_code == 200, response.text
    assert outcomes(gateway, account, omnimessage_id) == [(upstream.channel, "DELIVRD", 0)]
    [report] = receiver.wait_for(1)
    assert report.path == "/dlr"
    assert signed_by(report, account.api_password)
    body = report.json()
    assert (body["message_id"], body["omnimessage_id"], body["channel"], body["status"],
            body["err"], body["to"]) == (message_id, omnimessage_id, upstream.channel,
                                         "DELIVRD", 0, TO)


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize(("secret", "refused_with"), [
    pytest.param("someone-else's-secret", 403, id="wrong-signature"),
    pytest.param(None, 401, id="no-signature"),
])
def test_wrongly_signed_status_callback_is_refused_and_nothing_stored(
        gateway: LiveServer, account: Account, receiver: WebhookReceiver, upstream: Upstream,
        secret: str | None, refused_with: int) -> None:
    omnimessage_id, message_id, ref = send_through(gateway, account, upstream)
    before = traces(gateway, message_id)
    assert before == Traces(status_events=0, webhooks=0, unmatched_reports=0)

    response = upstream.post(gateway, upstream.delivered(message_id, ref), secret)

    assert response.status_code == refused_with
    # The sinks are awaited before any answer, so whatever a callback stores is there by now.
    assert traces(gateway, message_id) == before
    assert outcomes(gateway, account, omnimessage_id) == [(upstream.channel, None, None)]
    assert receiver.received == []


# --- 2. a fallback chain across chat upstreams ----------------------------------------------------


def test_viber_then_whatsapp_then_sms_chain_ends_delivered_by_sms(
        gateway: LiveServer, account: Account, receiver: WebhookReceiver,
        upstreams: Upstreams) -> None:
    whatsapp = WhatsAppCloud()
    sent = send(gateway, account, ViberBot.variant, whatsapp.variant,
                {"channel": "sms", "text": "Your order shipped"})
    omnimessage_id = sent["omnimessage_id"]
    viber_id, whatsapp_id, sms_id = (m["message_id"] for m in sent["messages"])

    # Viber: the number never shared its contact with the bot, so it fails at once (err 9) and
    # WhatsApp goes out to the Graph API.
    wamid = provider_ref_once_sent(gateway, whatsapp_id)
    assert upstreams.viber.requests == []
    [graph_request] = upstreams.graph.requests
    assert graph_request.json()["biz_opaque_callback_data"] == whatsapp_id

    # Meta reports the WhatsApp message failed: not a WhatsApp user (131026 -> err 3).
    response = whatsapp.post(gateway, whatsapp.failed(whatsapp_id, wamid, 131026,
                                                      "Message undeliverable"), WA_APP_SECRET)
    assert response.status_code == 200, response.text

    # The sandbox delivers the SMS.
    expected = [("viber", "FAILED", 9), ("whatsapp", "FAILED", 3), ("sms", "DELIVRD", 0)]
    wait_until(lambda: outcomes(gateway, account, omnimessage_id) == expected, timeout=15)
    reports = receiver.wait_for(3)
    assert len(reports) == 3
    assert all(signed_by(r, account.api_password) for r in reports)
    assert [(r.json()["message_id"], r.json()["channel"], r.json()["status"], r.json()["err"])
            for r in reports] == [(viber_id, "viber", "FAILED", 9),
                                  (whatsapp_id, "whatsapp", "FAILED", 3),
                                  (sms_id, "sms", "DELIVRD", 0)]
    assert {r.json()["omnimessage_id"] for r in reports} == {omnimessage_id}
    assert "131026" in (reports[1].json()["error"] or "")


# --- 3. inbound WhatsApp messages -----------------------------------------------------------------


def test_inbound_whatsapp_text_reaches_the_accounts_inbound_url(
        gateway: LiveServer, account: Account, receiver: WebhookReceiver) -> None:
    gateway.call(gateway.runtime.store.set_inbound_numbers(account.id, [WA_NUMBER]))
    whatsapp = WhatsAppCloud()
    sent_at = int(time.time())
    body = compact(whatsapp.notification({
        "contacts": [{"profile": {"name": "Jane"}, "wa_id": TO.lstrip("+")}],
        "messages": [{"from": TO.lstrip("+"), "id": "wamid.HBgLMzcyNTY3ODkwMTIVAgASGBQ",
                      "timestamp": str(sent_at), "type": "text",
                      "text": {"body": "Where is my parcel?"}}]}))

    response = whatsapp.post(gateway, body, WA_APP_SECRET)

    assert response.status_code == 200, response.text
    [delivered] = receiver.wait_for(1)
    assert delivered.path == "/inbound"
    assert signed_by(delivered, account.inbound_secret)
    inbound = delivered.json()
    assert set(inbound) == {"msg_id", "sub_msg_id", "channel", "recipient", "time", "text",
                            "sender"}
    assert inbound["msg_id"] == inbound["sub_msg_id"]
    assert (inbound["channel"], inbound["recipient"], inbound["sender"], inbound["text"]) == \
        ("whatsapp", WA_NUMBER, TO, "Where is my parcel?")
    # Messente's inbound time: UTC with microseconds and a Z, here the time WhatsApp gave.
    expected_time = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent_at)) + ".000000Z"
    assert inbound["time"] == expected_time
    [(stored_id, account_id)] = read(gateway, select(inbound_messages.c.id,
                                                     inbound_messages.c.account_id))
    assert (stored_id, account_id) == (inbound["msg_id"], account.id)
