"""The pure parts of the Twilio surface: signature, SIDs, status and error mapping, dates, paging
tokens, create validation, callback bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator

from omnirelay.core.reports import ReportContext
from omnirelay.core.twilio.callbacks import sign_status_callback, status_callbacks, twilio_signature
from omnirelay.core.twilio.create import ScheduleWindow, parse_create
from omnirelay.core.twilio.dates import date_sent_range
from omnirelay.core.twilio.errors import TwilioError
from omnirelay.core.twilio.listing import page_token, parse_list_query, read_page_token
from omnirelay.core.twilio.resource import message_sid, message_status, omnimessage_id

NOW = dt.datetime(2030, 1, 1, 12, 0, 0)


def test_signature_matches_the_sdk_test_vectors() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    params.update(Caller="+12349013030", From="+12349013030")
    assert twilio_signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_signer_agrees_with_request_validator_on_repeated_and_unicode_values() -> None:
    class Token:
        twilio_auth_token = "s3cret"

    url = "http://127.0.0.1:9000/cb?z=1&a=2"
    body = b"B=2&A=%C3%A9+x&A=b&A=b&Empty="
    headers = sign_status_callback(Token(), url, body)
    params = parse_qsl(body.decode(), keep_blank_values=True)
    assert twilio_signature("s3cret", url, params) == headers["X-Twilio-Signature"]

    class MultiDict(dict[str, str]):  # as Flask's, which the validator reads with getall
        def getall(self, name: str) -> list[str]:
            return [v for k, v in params if k == name]

    assert RequestValidator("s3cret").validate(url, MultiDict(params),
                                               headers["X-Twilio-Signature"])


def test_sid_round_trip() -> None:
    ident = str(uuid.uuid4())
    sid = message_sid(ident)
    assert sid == "SM" + ident.replace("-", "")
    assert omnimessage_id(sid) == ident
    assert omnimessage_id("SM" + sid[2:].upper()) == ident
    for bad in ("SM123", "MM" + sid[2:], sid + "0", "SM" + "g" * 32, ""):
        assert omnimessage_id(bad) is None


@pytest.mark.parametrize(("state", "status", "err", "sent", "send_at", "expected"), [
    ("due", None, None, False, None, ("queued", None)),
    ("due", None, None, False, NOW + dt.timedelta(hours=1), ("scheduled", None)),
    ("due", None, None, False, NOW - dt.timedelta(seconds=1), ("queued", None)),
    ("canceled", None, None, False, NOW + dt.timedelta(hours=1), ("canceled", None)),
    ("sending", None, None, False, None, ("sending", None)),
    ("sent", None, None, True, None, ("sent", None)),
    ("sent", "ACK", 0, True, None, ("sent", None)),
    ("sent", "ACCEPTD", 0, True, None, ("sent", None)),
    ("sent", "UNKNOWN", 0, True, None, ("sent", None)),
    ("done", "DELIVRD", 0, True, None, ("delivered", None)),
    ("done", "SEEN", 10, True, None, ("delivered", None)),
    ("done", "UNDELIV", 1, True, None, ("undelivered", 30003)),
    ("done", "EXPIRED", 2, True, None, ("undelivered", 30003)),
    ("done", "EXPIRED", 2, False, None, ("failed", 30001)),
    ("done", "FAILED", 1, True, None, ("failed", 30008)),
    ("done", "REJECTD", 3, True, None, ("failed", 30005)),
    ("done", "REJECTD", 5, True, None, ("failed", 30005)),
    ("done", "FAILED", 4, True, None, ("failed", 30002)),
    ("done", "REJECTD", 6, True, None, ("failed", 30007)),
    ("done", "REJECTD", 7, True, None, ("failed", 30007)),
    ("done", "REJECTD", 8, True, None, ("failed", 30004)),
    ("done", "NACK", 9, True, None, ("failed", 30006)),
    ("done", "DELETED", 999, True, None, ("failed", 30008)),
    ("done", "UNDELIV", 8, True, None, ("undelivered", 30004)),
])
def test_status_mapping(state: str, status: str | None, err: int | None, sent: bool,
                        send_at: dt.datetime | None, expected: tuple[str, int | None]) -> None:
    outcome = message_status(state, status, err, was_sent=sent, send_at=send_at, now=NOW)
    assert (outcome.status.value, outcome.error_code) == expected
    assert (outcome.error_message is None) == (outcome.error_code is None)


def test_date_sent_ranges() -> None:
    day = dt.datetime(2024, 1, 31)
    assert date_sent_range("DateSent", "2024-01-31") == (day, day + dt.timedelta(days=1))
    assert date_sent_range("DateSent", "2024-01-31T15:00:00Z") == (day, day + dt.timedelta(days=1))
    assert date_sent_range("DateSent<", "2024-01-31") == (None, day + dt.timedelta(days=1))
    assert date_sent_range("DateSent>", "2024-01-31") == (day, None)
    at = dt.datetime(2024, 1, 31, 13, 0)
    assert date_sent_range("DateSent>", "2024-01-31T15:00:00+02:00") == (at, None)
    assert date_sent_range("DateSent<", "Wed, 31 Jan 2024 13:00:00 +0000") == \
        (None, at + dt.timedelta(microseconds=1))
    with pytest.raises(ValueError):
        date_sent_range("DateSent", "31.01.2024")


def test_page_tokens_round_trip_and_carry_the_snapshot() -> None:
    snapshot = dt.datetime(2030, 1, 1, 12, 0, 0, 123456)
    assert read_page_token(page_token(150, snapshot)) == (150, snapshot)
    query = parse_list_query([("PageSize", "50"), ("Page", "3"),
                              ("PageToken", page_token(150, snapshot))], NOW)
    assert (query.offset, query.sent_before, query.page) == (150, snapshot, 3)
    for bad in ("XX", "PA", "PA!!!", "PA" + "bm9wZQ"):
        with pytest.raises(ValueError):
            read_page_token(bad)


def test_list_query_bounds() -> None:
    query = parse_list_query([("PageSize", "5000"), ("To", "+372 5551 2345"),
                              ("DateSent<", "2029-06-01")], NOW)
    assert query.page_size == 1000 and query.to == "+37255512345"
    assert query.sent_before == dt.datetime(2029, 6, 2)
    assert parse_list_query([("Page", "2"), ("PageSize", "10")], NOW).offset == 20


def _create(**fields: str) -> dict[str, list[str]]:
    form = {"To": "+37255512345", "From": "Shop", "Body": "hi"}
    form.update(fields)
    return {k: [v] for k, v in form.items()}


def test_schedule_window_is_inclusive() -> None:
    window = ScheduleWindow(min_seconds=900, max_seconds=3600)
    for seconds, ok in ((899, False), (900, True), (3600, True), (3601, False)):
        when = (NOW + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        form = _create(ScheduleType="fixed", SendAt=when)
        if ok:
            assert parse_create(form, now=NOW, window=window).send_at == \
                NOW + dt.timedelta(seconds=seconds)
        else:
            with pytest.raises(TwilioError) as error:
                parse_create(form, now=NOW, window=window)
            assert error.value.code == 35114


def test_create_defaults_and_options() -> None:
    parsed = parse_create(_create(), now=NOW)
    assert (parsed.validity_seconds, parsed.autoconvert, parsed.discard_content) == \
        (36000, "off", False)
    parsed = parse_create(_create(SmartEncoded="true", ContentRetention="discard",
                                  ValidityPeriod="60", From="+372 5550 0000",
                                  # unknown and ignorable parameters pass, as on Twilio
                                  ProvideFeedback="true", Attempt="2", NewThing="x"),
                          now=NOW)
    assert (parsed.validity_seconds, parsed.autoconvert, parsed.discard_content) == \
        (60, "on", True)
    assert parsed.from_ == "+37255500000"
    assert parse_create(_create(From="12345"), now=NOW).from_ == "12345"  # a short code
    with pytest.raises(TwilioError) as only_digits:
        parse_create(_create(From="1234567890123"), now=NOW)
    assert only_digits.value.code == 21212


def _ctx(event: str, status: str | None, err: int | None = None,
         parts: int | None = 1, url: str | None = "https://example.com/cb") -> ReportContext:
    return ReportContext(
        event=event, surface="twilio", account_id=1, omnimessage_id=str(uuid.UUID(int=7)),
        message_id="m", channel="sms", to="+37255512345", sender="Shop", status=status,
        err=err, error=None, parts_count=parts, occurred_at=dt.datetime(2023, 3, 9, 20, 21),
        dlr_url=None, extra={"status_callback": url, "from": "Shop", "account_sid": "AC1"},
        content=None)


def _fields(ctx: ReportContext) -> dict[str, str] | None:
    drafts = status_callbacks(ctx)
    if not drafts:
        return None
    (draft,) = drafts
    assert (draft.kind, draft.url) == ("twilio", "https://example.com/cb")
    return dict(parse_qsl(draft.body.decode()))


def test_callback_bodies() -> None:
    sid = "SM" + "0" * 31 + "7"
    assert _fields(_ctx("sent", None)) == {
        "SmsSid": sid, "SmsStatus": "sent", "MessageStatus": "sent", "To": "+37255512345",
        "MessageSid": sid, "AccountSid": "AC1", "From": "Shop", "ApiVersion": "2010-04-01"}
    delivered = _fields(_ctx("status", "DELIVRD", 0))
    assert delivered is not None
    assert (delivered["MessageStatus"], delivered["RawDlrDoneDate"]) == ("delivered", "2303092021")
    assert "ErrorCode" not in delivered
    expired_in_queue = _fields(_ctx("status", "EXPIRED", 2, parts=None))
    assert expired_in_queue is not None
    assert (expired_in_queue["MessageStatus"], expired_in_queue["ErrorCode"]) == ("failed", "30001")
    assert "RawDlrDoneDate" not in expired_in_queue
    expired_sent = _fields(_ctx("status", "EXPIRED", 2))
    assert expired_sent is not None
    assert (expired_sent["MessageStatus"], expired_sent["ErrorCode"]) == ("undelivered", "30003")
    assert _fields(_ctx("status", "UNKNOWN", 0)) is None
    assert _fields(_ctx("status", "DELIVRD", 0, url=None)) is None
    ack = _fields(_ctx("status", "ACK", 0))
    assert ack is not None and ack["MessageStatus"] == "sent"
