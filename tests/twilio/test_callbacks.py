"""Status callbacks: form POSTs to StatusCallback, received by a real HTTP server on 127.0.0.1 and
validated with the SDK's own RequestValidator."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from omnirelay.store.queries import Account
from tests.support import Received, WebhookReceiver, wait_until
from tests.twilio.conftest import create


def form(received: Received) -> dict[str, str]:
    return dict(parse_qsl(received.body.decode(), keep_blank_values=True))


def assert_signed(received: Received, url: str, token: str) -> None:
    signature = received.headers["X-Twilio-Signature"]
    assert RequestValidator(token).validate(url, form(received), signature)
    assert not RequestValidator("another-token").validate(url, form(received), signature)
    assert received.headers["Content-Type"].startswith("application/x-www-form-urlencoded")


@pytest.mark.parametrize(("to", "final", "error_code"), [
    ("+37255512345", "delivered", None),
    ("+37255519991", "undelivered", "30003"),
    ("+37255519993", "failed", "30008"),
])
def test_sent_then_final_status(client: Client, account: Account, receiver: WebhookReceiver,
                                to: str, final: str, error_code: str | None) -> None:
    # A query string is part of what is signed, exactly as given.
    url = receiver.url + "/twilio/status?tenant=7&b=2"
    message = create(client, to=to, status_callback=url)
    sent, last = receiver.wait_for(2)
    assert [form(r)["MessageStatus"] for r in (sent, last)] == ["sent", final]
    for received in (sent, last):
        assert received.path == "/twilio/status?tenant=7&b=2"
        assert_signed(received, url, account.twilio_auth_token)
        fields = form(received)
        assert fields["MessageSid"] == fields["SmsSid"] == message.sid
        assert fields["SmsStatus"] == fields["MessageStatus"]
        assert fields["AccountSid"] == account.twilio_account_sid
        assert (fields["To"], fields["From"]) == (to, "+37255500000")
        assert fields["ApiVersion"] == "2010-04-01"
    assert "ErrorCode" not in form(sent)
    assert form(last).get("ErrorCode") == error_code
    assert (last.headers["I-Twilio-Idempotency-Token"]
            != sent.headers["I-Twilio-Idempotency-Token"])


def test_rejected_at_submit_gets_one_failed_callback(client: Client, account: Account,
                                                     receiver: WebhookReceiver) -> None:
    create(client, to="+37255519992", status_callback=receiver.url + "/cb")
    (only,) = receiver.wait_for(1)
    time.sleep(0.5)
    assert len(receiver.received) == 1
    assert (form(only)["MessageStatus"], form(only)["ErrorCode"]) == ("failed", "30005")
    assert_signed(only, receiver.url + "/cb", account.twilio_auth_token)


def test_expiry_by_validity_period_is_reported(client: Client, account: Account,
                                               receiver: WebhookReceiver) -> None:
    create(client, to="+37255519990", validity_period=1, status_callback=receiver.url + "/cb")
    sent, expired = receiver.wait_for(2)
    assert form(sent)["MessageStatus"] == "sent"
    assert (form(expired)["MessageStatus"], form(expired)["ErrorCode"]) == ("undelivered",
                                                                            "30003")


def test_failed_callback_is_retried(client: Client, account: Account) -> None:
    receiver = WebhookReceiver(fail_first=2).start()
    try:
        url = receiver.url + "/cb"
        create(client, status_callback=url)
        sent, delivered = receiver.wait_for(2)
        assert receiver.attempts >= 4
        assert [form(r)["MessageStatus"] for r in (sent, delivered)] == ["sent", "delivered"]
        assert_signed(delivered, url, account.twilio_auth_token)
    finally:
        receiver.stop()


def test_no_callback_without_status_callback(client: Client, receiver: WebhookReceiver) -> None:
    message = create(client)
    wait_until(lambda: client.messages(message.sid).fetch().status == "delivered")
    assert receiver.received == []
