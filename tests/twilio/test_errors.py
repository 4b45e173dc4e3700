"""Bad requests: each raises TwilioRestException with Twilio's code and status, and nothing is
stored. Authentication fails the same way whatever was wrong."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from omnirelay.store.queries import Account
from tests.support import LiveServer, create_account
from tests.twilio.conftest import create, sdk

MG = "MG" + "a" * 32
SOON = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
TOO_LATE = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)

# (what is wrong, create() arguments, expected code, expected HTTP status)
CASES: list[tuple[str, dict[str, Any], int, int]] = [
    ("To empty", {"to": ""}, 21604, 400),
    ("To not a number", {"to": "+1555"}, 21211, 400),
    ("To a channel address", {"to": "whatsapp:+37255512345"}, 21211, 400),
    ("From missing", {"from_": None}, 21603, 400),
    ("From malformed", {"from_": "Too long sender"}, 21212, 400),
    ("From only digits with plus, invalid", {"from_": "+1"}, 21212, 400),
    ("From a channel address", {"from_": "whatsapp:+37255500000"}, 21606, 400),
    ("Body missing", {"body": None}, 21619, 400),
    ("Body too long", {"body": "x" * 1601}, 21617, 400),
    ("Body too long in UTF-16 units", {"body": "\U0001F600" * 801}, 21617, 400),
    ("MediaUrl", {"media_url": ["https://example.com/a.png"]}, 21621, 400),
    ("SendAsMms", {"send_as_mms": True}, 21621, 400),
    ("Messaging Service", {"from_": None, "messaging_service_sid": MG}, 21701, 404),
    ("Messaging Service malformed", {"messaging_service_sid": "MGxyz"}, 21705, 400),
    ("ContentSid", {"body": None, "content_sid": "HX" + "b" * 32}, 21655, 400),
    ("ContentVariables alone", {"content_variables": "{}"}, 21654, 400),
    ("StatusCallback not http", {"status_callback": "ftp://example.com/cb"}, 21609, 400),
    ("StatusCallback underscore host", {"status_callback": "https://a_b.example/cb"}, 21609, 400),
    ("ApplicationSid", {"application_sid": "AP" + "c" * 32}, 21420, 400),
    ("ValidityPeriod 0", {"validity_period": 0}, 21624, 400),
    ("ValidityPeriod above 36000", {"validity_period": 36001}, 21624, 400),
    ("ScheduleType unknown", {"schedule_type": "later", "send_at": LATER}, 35126, 400),
    ("SendAt without ScheduleType", {"send_at": LATER}, 35126, 400),
    ("SendAt missing", {"schedule_type": "fixed"}, 35111, 400),
    ("SendAt too soon", {"schedule_type": "fixed", "send_at": SOON}, 35114, 400),
    ("SendAt too late", {"schedule_type": "fixed", "send_at": TOO_LATE}, 35114, 400),
    ("SendAt not a date", {"schedule_type": "fixed", "send_at": "tomorrow"}, 35115, 400),
    ("ContentRetention unknown", {"content_retention": "forever"}, 30029, 400),
    ("AddressRetention obfuscate", {"address_retention": "obfuscate"}, 30030, 400),
    ("ShortenUrls", {"shorten_urls": True}, 20001, 400),
]


def test_each_bad_create_raises_its_code_and_stores_nothing(client: Client) -> None:
    wrong: list[str] = []
    for name, arguments, code, status in CASES:
        fields = {k: v for k, v in arguments.items() if v is not None}
        omitted = [k for k, v in arguments.items() if v is None]
        try:
            if omitted:
                base: dict[str, Any] = {"to": "+37255512345", "from_": "+37255500000",
                                        "body": "hello"}
                for key in omitted:
                    base.pop(key)
                client.messages.create(**{**base, **fields})
            else:
                create(client, **fields)
        except TwilioRestException as exc:
            got = (exc.code, exc.status)
            if got != (code, status) or not exc.msg.startswith("Unable to create record: "):
                wrong.append(f"{name}: got {got} {exc.msg!r}, expected {(code, status)}")
            continue
        wrong.append(f"{name}: accepted")
    assert wrong == []
    assert client.messages.list() == []


def test_error_body_is_twilio_legacy_shape(server: LiveServer, account: Account) -> None:
    url = f"{server.base_url}/2010-04-01/Accounts/{account.twilio_account_sid}/Messages.json"
    auth = (account.twilio_account_sid, account.twilio_auth_token)
    response = httpx.post(url, data={"To": "+1555", "From": "Shop", "Body": "x"}, auth=auth)
    assert response.status_code == 400
    assert response.json() == {
        "code": 21211, "message": "The 'To' number +1555 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}


def test_json_body_is_ignored_as_twilio_does(server: LiveServer, account: Account) -> None:
    url = f"{server.base_url}/2010-04-01/Accounts/{account.twilio_account_sid}/Messages.json"
    auth = (account.twilio_account_sid, account.twilio_auth_token)
    response = httpx.post(url, json={"To": "+37255512345", "From": "Shop", "Body": "x"},
                          auth=auth)
    assert (response.status_code, response.json()["code"]) == (400, 21604)


def test_wrong_sid_and_wrong_token_fail_alike(server: LiveServer, account: Account) -> None:
    answers = []
    for sid, token in ((account.twilio_account_sid, "wrong-token"),
                       ("AC" + "0" * 32, account.twilio_auth_token)):
        try:
            create(sdk(server, sid, token))
        except TwilioRestException as exc:
            answers.append((exc.status, exc.code, exc.msg))
    assert len(answers) == 2 and answers[0] == answers[1]
    assert answers[0][:2] == (401, 20003)
    raw = httpx.get(f"{server.base_url}/2010-04-01/Accounts/{account.twilio_account_sid}"
                    "/Messages.json")
    assert raw.status_code == 401
    assert raw.json()["message"] == "Authentication Error - No credentials provided"
    assert raw.json()["detail"] == "Your AccountSid or AuthToken was incorrect."
    assert raw.headers["www-authenticate"].startswith("Basic")


def test_another_accounts_path_and_messages_are_not_found(server: LiveServer,
                                                          client: Client) -> None:
    other = server.call(create_account(server.runtime, "other"))
    theirs = create(sdk(server, other.twilio_account_sid, other.twilio_auth_token))
    with_other_path = client.api.v2010.accounts(other.twilio_account_sid)
    with_other_sid = client.messages(theirs.sid)
    # (The SDK's list raises a bare TwilioException on any non-200 page, so create stands in.)
    for call in (lambda: create(with_other_path), with_other_sid.fetch, with_other_sid.delete):
        try:
            call()
        except TwilioRestException as exc:
            assert (exc.status, exc.code) == (404, 20404)
        else:
            raise AssertionError(f"{call} succeeded")


def test_unknown_and_malformed_sids_are_not_found(client: Client, server: LiveServer,
                                                  account: Account) -> None:
    for sid in ("SM" + "0" * 32, "SMnot-a-sid", "MM" + "1" * 32):
        try:
            client.messages(sid).fetch()
        except TwilioRestException as exc:
            assert (exc.status, exc.code) == (404, 20404)
            assert sid in exc.msg
        else:
            raise AssertionError(sid)
    # A message sent through the Messente API is not a Twilio message.
    auth = (account.api_username, account.api_password)
    sent = httpx.post(server.base_url + "/v1/omnimessage", auth=auth, json={
        "to": "+37255512345", "messages": [{"channel": "sms", "text": "hi"}]}).json()
    sid = "SM" + sent["omnimessage_id"].replace("-", "")
    try:
        client.messages(sid).fetch()
    except TwilioRestException as exc:
        assert exc.code == 20404
    else:
        raise AssertionError("a Messente message was visible")


def test_framework_errors_in_twilio_format(server: LiveServer, account: Account) -> None:
    auth = (account.twilio_account_sid, account.twilio_auth_token)
    base = f"{server.base_url}/2010-04-01/Accounts/{account.twilio_account_sid}"
    method = httpx.put(base + "/Messages.json", auth=auth)
    assert (method.status_code, method.json()["code"]) == (405, 20004)
    missing = httpx.get(base + "/Calls.json", auth=auth)
    assert (missing.status_code, missing.json()["code"]) == (404, 20404)
    assert set(missing.json()) == {"code", "message", "more_info", "status"}


def test_bad_update_and_paging_parameters(client: Client, server: LiveServer,
                                          account: Account) -> None:
    sid = create(client).sid
    for update in ({"status": "sent"}, {"body": "new text"}):
        try:
            client.messages(sid).update(**update)
        except TwilioRestException as exc:
            assert (exc.status, exc.code) == (400, 20001)
        else:
            raise AssertionError(update)
    auth = (account.twilio_account_sid, account.twilio_auth_token)
    url = f"{server.base_url}/2010-04-01/Accounts/{account.twilio_account_sid}/Messages.json"
    for params in ({"PageSize": "0"}, {"PageSize": "ten"}, {"PageToken": "PAnonsense!"},
                   {"DateSent": "yesterday"}):
        response = httpx.get(url, params=params, auth=auth)
        assert (response.status_code, response.json()["code"]) == (400, 20001), params
