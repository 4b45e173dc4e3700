"""The official twilio SDK against a live gateway: create, fetch, list, schedule, cancel, redact,
delete, and final statuses from the sandbox (numbers ending 9991/9992/9993)."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from omnirelay.store.queries import Account
from tests.support import LiveServer, create_account, wait_until
from tests.twilio.conftest import create, sdk

RESOURCE_FIELDS = {
    "account_sid", "api_version", "body", "date_created", "date_sent", "date_updated",
    "direction", "error_code", "error_message", "from", "messaging_service_sid", "num_media",
    "num_segments", "price", "price_unit", "sid", "status", "subresource_uris", "to", "uri",
}
FINAL = {"delivered", "undelivered", "failed", "canceled"}


def final(client: Client, sid: str) -> Any:
    return wait_until(lambda: (m := client.messages(sid).fetch()).status in FINAL and m)


def later(seconds: int = 3600) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_create_answers_the_full_resource(client: Client, account: Account) -> None:
    message = create(client, body="Hello there")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert message.account_sid == account.twilio_account_sid
    assert (message.to, message.from_, message.body) == ("+37255512345", "+37255500000",
                                                         "Hello there")
    assert message.direction == "outbound-api"
    assert (message.num_segments, message.num_media) == ("1", "0")
    assert message.price is None and message.error_code is None and message.date_sent is None
    assert isinstance(message.date_created, dt.datetime)  # parsed from RFC 2822
    assert message.uri == (f"/2010-04-01/Accounts/{account.twilio_account_sid}/Messages/"
                           f"{message.sid}.json")
    assert message.subresource_uris == {"media": message.uri[:-5] + "/Media.json"}
    assert message.api_version == "2010-04-01"


def test_raw_bodies_have_twilio_shapes(server: LiveServer, account: Account) -> None:
    auth = (account.twilio_account_sid, account.twilio_auth_token)
    base = f"/2010-04-01/Accounts/{account.twilio_account_sid}"
    with httpx.Client(base_url=server.base_url, auth=auth) as http:
        created = http.post(base + "/Messages.json", data={
            "To": "+37255512345", "From": "Shop", "Body": "x" * 161})
        assert created.status_code == 201
        body = created.json()
        assert set(body) == RESOURCE_FIELDS
        assert body["num_segments"] == "2" and body["num_media"] == "0"
        wait_until(lambda: http.get(body["uri"]).json()["status"] == "delivered")
        assert http.get(body["uri"]).json()["num_segments"] == "2"
        assert body["error_code"] is None and body["messaging_service_sid"] is None
        for key in ("date_created", "date_updated"):
            assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", body[key])
            assert email.utils.parsedate(body[key]) is not None
        page = http.get(base + "/Messages.json", params={"PageSize": 1})
        assert page.status_code == 200
        assert set(page.json()) == {"end", "first_page_uri", "messages", "next_page_uri", "page",
                                    "page_size", "previous_page_uri", "start", "uri"}
        assert page.json()["first_page_uri"] == base + "/Messages.json?PageSize=1&Page=0"
        media = http.get(body["subresource_uris"]["media"])
        assert media.status_code == 200 and media.json()["media_list"] == []


def test_fetch_shows_delivery(client: Client) -> None:
    message = final(client, create(client).sid)
    assert message.status == "delivered"
    assert message.error_code is None and message.error_message is None
    assert isinstance(message.date_sent, dt.datetime)
    assert message.body == "hello"


@pytest.mark.parametrize(("to", "status", "code", "text"), [
    ("+37255519991", "undelivered", 30003, "Unreachable destination handset"),
    ("+37255519992", "failed", 30005, "Unknown destination handset"),
    ("+37255519993", "failed", 30008, "Unknown error"),
])
def test_final_statuses_from_the_sandbox(client: Client, to: str, status: str, code: int,
                                         text: str) -> None:
    message = final(client, create(client, to=to).sid)
    assert (message.status, message.error_code, message.error_message) == (status, code, text)


def test_unacknowledged_message_expires_undelivered(client: Client) -> None:
    # 9990: the upstream accepts and never reports; ValidityPeriod runs out.
    message = create(client, to="+37255519990", validity_period=1)
    assert (final(client, message.sid).status, final(client, message.sid).error_code) == \
        ("undelivered", 30003)


def test_smart_encoding_and_unicode_segments(client: Client) -> None:
    assert create(client, body="\u00e9" * 160).num_segments == "1"  # é is GSM-7
    assert create(client, body="\u0161" * 71).num_segments == "2"  # š is not: UCS-2, 70 a part
    quotes = "\u2019" * 100  # a curly apostrophe has a GSM-7 look-alike, which SmartEncoded uses
    assert create(client, body=quotes).num_segments == "2"
    smart = create(client, body=quotes, smart_encoded=True)
    assert smart.num_segments == "1" and smart.body == quotes


def test_list_pages_newest_first(client: Client) -> None:
    sids = [create(client, body=f"n{i}").sid for i in range(7)]
    listed = client.messages.list(page_size=3)
    assert [m.sid for m in listed] == sids[::-1]
    assert [m.sid for m in client.messages.stream(limit=5, page_size=2)] == sids[::-1][:5]
    first_page = client.messages.page(page_size=3)
    second_page = first_page.next_page()
    assert [m.sid for m in second_page] == sids[::-1][3:6]
    assert [m.sid for m in second_page.previous_page()] == sids[::-1][:3]


def test_pages_ignore_messages_accepted_meanwhile(client: Client) -> None:
    sids = [create(client, body=f"n{i}").sid for i in range(4)]
    first_page = client.messages.page(page_size=2)
    create(client, body="newer")
    assert [m.sid for m in first_page.next_page()] == sids[::-1][2:]


def test_list_filters(client: Client) -> None:
    one = create(client, to="+37255512345", from_="Shop").sid
    two = create(client, to="+37255554321", from_="+37255500000").sid
    assert [m.sid for m in client.messages.list(to="+37255554321")] == [two]
    assert [m.sid for m in client.messages.list(from_="Shop")] == [one]
    today = dt.datetime.now(dt.UTC).date()
    assert {m.sid for m in client.messages.list(date_sent=today)} == {one, two}
    assert client.messages.list(date_sent_after=later()) == []
    assert client.messages.list(date_sent_before=dt.datetime(2020, 1, 1)) == []
    assert len(client.messages.list(date_sent_before=later(), date_sent_after=later(-600))) == 2


def test_schedule_then_cancel(client: Client) -> None:
    message = create(client, schedule_type="fixed", send_at=later())
    assert message.status == "scheduled" and message.date_sent is None
    canceled = client.messages(message.sid).update(status="canceled")
    assert canceled.status == "canceled"
    assert client.messages(message.sid).fetch().status == "canceled"
    with pytest.raises(TwilioRestException) as again:
        client.messages(message.sid).update(status="canceled")
    assert (again.value.status, again.value.code) == (400, 30409)


def test_cannot_cancel_a_message_that_is_not_scheduled(client: Client) -> None:
    message = final(client, create(client).sid)
    with pytest.raises(TwilioRestException) as error:
        client.messages(message.sid).update(status="canceled")
    assert error.value.code == 30409
    assert client.messages(message.sid).fetch().status == "delivered"


def test_delete_finished_message_but_not_one_in_flight(client: Client) -> None:
    scheduled = create(client, schedule_type="fixed", send_at=later())
    with pytest.raises(TwilioRestException) as busy:
        client.messages(scheduled.sid).delete()
    assert (busy.value.status, busy.value.code) == (400, 20009)
    done = final(client, create(client).sid)
    assert client.messages(done.sid).delete() is True
    with pytest.raises(TwilioRestException) as gone:
        client.messages(done.sid).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)
    client.messages(scheduled.sid).update(status="canceled")
    assert client.messages(scheduled.sid).delete() is True


def test_redact_body(client: Client) -> None:
    done = final(client, create(client, body="secret code 1234").sid)
    assert client.messages(done.sid).update(body="").body == ""
    assert client.messages(done.sid).fetch().body == ""
    scheduled = create(client, schedule_type="fixed", send_at=later(), body="later secret")
    with pytest.raises(TwilioRestException) as unsent:
        client.messages(scheduled.sid).update(body="")
    assert unsent.value.code == 20009
    both = client.messages(scheduled.sid).update(status="canceled", body="")
    assert (both.status, both.body) == ("canceled", "")


def test_content_retention_discard_forgets_the_body_once_done(client: Client) -> None:
    message = create(client, body="one-time 9876", content_retention="discard")
    assert message.body == "one-time 9876"
    assert final(client, message.sid).body == ""
    kept = final(client, create(client, body="keep me").sid)
    assert kept.body == "keep me"


def test_account_sid_need_not_start_with_ac(server: LiveServer) -> None:
    other = server.call(create_account(server.runtime, "custom", twilio_account_sid="team-7"))
    client = sdk(server, "team-7", other.twilio_auth_token)
    message = create(client)
    assert message.account_sid == "team-7"
    assert message.uri.startswith("/2010-04-01/Accounts/team-7/Messages/")
    assert [m.sid for m in client.messages.list()] == [message.sid]


def test_routes_are_documented(server: LiveServer) -> None:
    paths = httpx.get(server.base_url + "/openapi.json").json()["paths"]
    assert set(paths["/2010-04-01/Accounts/{account_sid}/Messages.json"]) == {"get", "post"}
    assert set(paths["/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"]) == \
        {"get", "post", "delete"}
