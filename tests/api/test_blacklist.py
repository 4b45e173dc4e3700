"""The blacklist is enforced at send time, on both surfaces, on SQLite and PostgreSQL: a
blacklisted recipient's attempts end REJECTD (err 8) without reaching a channel, including
messages accepted, or scheduled, before the number was blacklisted; the other messages of a
bulk request go out as usual."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import httpx
from messente_api import (
    SMS,
    BulkMessagingApi,
    BulkOmnimessage,
    DeliveryReportApi,
    NumberToBlacklist,
    Omnimessage,
    OmnimessageApi,
    OmnimessageMessagesInner,
    Viber,
)
from messente_api import BlacklistApi as MessenteBlacklist
from sqlalchemy import update
from twilio.rest import Client

from omnirelay.channels.base import OutboundMessage, SendResult
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.wakeup import ATTEMPTS
from omnirelay.store.queries import Account
from omnirelay.store.tables import attempts
from tests.api.test_phonebook import sdk
from tests.smpp.gateway_support import cli_smsc, send, smpp_connector, smpp_gateway, wait_final
from tests.spec import assert_matches
from tests.support import LiveServer, WebhookReceiver, create_account, wait_until

BLACKLISTED = "+37255551234"
SPACED = "+372 5555 1234"
ALLOWED = "+37255554321"
FINAL = {"DELIVRD", "UNDELIV", "FAILED", "REJECTD", "EXPIRED"}
TWILIO_FINAL = {"delivered", "undelivered", "failed", "canceled"}


def record_sends(server: LiveServer) -> list[str]:
    """The recipients of everything the gateway hands to a channel from now on."""
    recipients: list[str] = []
    for provider in {id(p): p for p in server.runtime.channels.values()}.values():
        original = provider.send

        async def send(batch: Sequence[OutboundMessage], original: Any = original
                       ) -> list[SendResult]:
            recipients.extend(m.to for m in batch)
            return await original(batch)  # type: ignore[no-any-return]

        provider.send = send  # type: ignore[method-assign]
    return recipients


def blacklist(server: LiveServer, account: Account, number: str = SPACED) -> None:
    MessenteBlacklist(sdk(server, account)).add_to_blacklist(NumberToBlacklist(phoneNumber=number))


def final_statuses(server: LiveServer, account: Account, omnimessage_id: str,
                   count: int) -> list[Any]:
    api = DeliveryReportApi(sdk(server, account))

    def done() -> list[Any] | None:
        statuses = api.retrieve_delivery_report(omnimessage_id).statuses
        finished = [s for s in statuses if s.status is not None and s.status.value in FINAL]
        return statuses if len(finished) == count else None

    return wait_until(done)  # type: ignore[no-any-return]


def make_due(server: LiveServer, omnimessage_id: str) -> None:
    """Bring a scheduled message's time forward to now, as if its hour had come."""
    def work(conn: Any) -> None:
        conn.execute(update(attempts).where(attempts.c.omnimessage_id == omnimessage_id,
                                            attempts.c.state == "due")
                     .values(due_at=utcnow()))

    server.call(server.runtime.db.write(work))
    server.loop.call_soon_threadsafe(server.runtime.wakeup.wake, ATTEMPTS)


def twilio(server: LiveServer, account: Account) -> Client:
    client = Client(account.twilio_account_sid, account.twilio_auth_token, environment={})
    client.api.base_url = server.base_url
    return client


def twilio_final(client: Client, sid: str) -> Any:
    return wait_until(lambda: (m := client.messages(sid).fetch()).status in TWILIO_FINAL and m)


CHAIN = [OmnimessageMessagesInner(Viber(text="hi on viber", sender="ShopV")),
         OmnimessageMessagesInner(SMS(text="hi by sms"))]


def test_a_blacklisted_recipient_is_accepted_and_every_attempt_rejected(
        server: LiveServer, receiver: WebhookReceiver) -> None:
    account = server.call(create_account(server.runtime, dlr_url=receiver.url))
    sent_to = record_sends(server)
    blacklist(server, account)
    api = OmnimessageApi(sdk(server, account))
    refused = api.send_omnimessage(Omnimessage(to=SPACED, messages=CHAIN))
    assert refused.to == BLACKLISTED and len(refused.messages) == 2
    statuses = final_statuses(server, account, refused.omnimessage_id, 2)
    assert [(s.channel.value, s.status.value, s.err.value) for s in statuses] == \
        [("viber", "REJECTD", 8), ("sms", "REJECTD", 8)]
    assert all("blacklist" in (s.error or "") for s in statuses)
    report = httpx.get(f"{server.base_url}/v1/omnimessage/{refused.omnimessage_id}/status",
                       auth=(account.api_username, account.api_password)).json()
    assert_matches(report, "DeliveryReportResponse")
    history = httpx.get(f"{server.base_url}/v1/omnimessage/{refused.omnimessage_id}",
                        auth=(account.api_username, account.api_password)).json()
    assert [[(e["event"], e["source"], e["status"]) for e in a["timeline"]
             if e["event"] == "status"] for a in history["attempts"]] == \
        [[("status", "blacklist", "REJECTD")]] * 2
    assert [a["sent_at"] for a in history["attempts"]] == [None, None]  # never submitted
    # Each attempt's delivery report says so too.
    reports = [r.json() for r in receiver.wait_for(2)]
    assert [(r["channel"], r["status"], r["err"]) for r in reports] == \
        [("viber", "REJECTD", 8), ("sms", "REJECTD", 8)]
    delivered = api.send_omnimessage(Omnimessage(to=ALLOWED, messages=CHAIN))
    assert final_statuses(server, account, delivered.omnimessage_id, 1)[0].status.value == \
        "DELIVRD"
    assert BLACKLISTED not in sent_to and ALLOWED in sent_to


def test_bulk_rejects_only_the_blacklisted_item(server: LiveServer, account: Account) -> None:
    sent_to = record_sends(server)
    blacklist(server, account)
    result = BulkMessagingApi(sdk(server, account)).send_bulk_omnimessage(BulkOmnimessage(
        messages=[Omnimessage(to=ALLOWED, messages=[OmnimessageMessagesInner(SMS(text="1"))]),
                  Omnimessage(to=BLACKLISTED, messages=[OmnimessageMessagesInner(SMS(text="2"))]),
                  Omnimessage(to="+37255550000",
                              messages=[OmnimessageMessagesInner(SMS(text="3"))])]))
    ids = [item.actual_instance.omnimessage_id for item in result.messages]
    outcomes = [final_statuses(server, account, i, 1)[0] for i in ids]
    assert [(s.status.value, s.err.value) for s in outcomes] == \
        [("DELIVRD", 0), ("REJECTD", 8), ("DELIVRD", 0)]
    assert sorted(sent_to) == ["+37255550000", ALLOWED]


def test_a_message_scheduled_before_the_number_was_blacklisted_is_not_sent(
        server: LiveServer, account: Account) -> None:
    sent_to = record_sends(server)
    api = OmnimessageApi(sdk(server, account))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    scheduled = api.send_omnimessage(Omnimessage(to=BLACKLISTED, time_to_send=later,
                                                 messages=CHAIN))
    kept = api.send_omnimessage(Omnimessage(to=ALLOWED, time_to_send=later, messages=CHAIN))
    blacklist(server, account)
    make_due(server, scheduled.omnimessage_id)
    make_due(server, kept.omnimessage_id)
    statuses = final_statuses(server, account, scheduled.omnimessage_id, 2)
    assert [(s.status.value, s.err.value) for s in statuses] == [("REJECTD", 8)] * 2
    assert final_statuses(server, account, kept.omnimessage_id, 1)[0].status.value == "DELIVRD"
    assert sent_to == [ALLOWED]


def test_the_blacklist_is_the_accounts_own_and_can_be_lifted(server: LiveServer,
                                                              account: Account) -> None:
    other = server.call(create_account(server.runtime, "other"))
    sent_to = record_sends(server)
    blacklist(server, other)  # another account's blacklist does not stop this one's messages
    api = OmnimessageApi(sdk(server, account))
    first = api.send_omnimessage(Omnimessage(
        to=BLACKLISTED, messages=[OmnimessageMessagesInner(SMS(text="a"))]))
    assert final_statuses(server, account, first.omnimessage_id, 1)[0].status.value == "DELIVRD"
    blacklist(server, account)
    second = api.send_omnimessage(Omnimessage(
        to=BLACKLISTED, messages=[OmnimessageMessagesInner(SMS(text="b"))]))
    assert final_statuses(server, account, second.omnimessage_id, 1)[0].status.value == \
        "REJECTD"
    MessenteBlacklist(sdk(server, account)).delete_from_blacklist(BLACKLISTED)
    third = api.send_omnimessage(Omnimessage(
        to=BLACKLISTED, messages=[OmnimessageMessagesInner(SMS(text="c"))]))
    assert final_statuses(server, account, third.omnimessage_id, 1)[0].status.value == "DELIVRD"
    assert sent_to == [BLACKLISTED, BLACKLISTED]


def test_twilio_messages_to_a_blacklisted_number_fail(server: LiveServer,
                                                      account: Account) -> None:
    sent_to = record_sends(server)
    client = twilio(server, account)
    blacklist(server, account)
    created = client.messages.create(to=BLACKLISTED, from_="+37255500000", body="hello")
    assert created.status == "queued"
    failed = twilio_final(client, created.sid)
    assert (failed.status, failed.error_code) == ("failed", 30004)
    assert failed.error_message == "Message blocked"
    # Several at once, one blacklisted: the others are sent.
    sids = [client.messages.create(to=to, from_="+37255500000", body="hi").sid
            for to in (ALLOWED, BLACKLISTED, "+37255550000")]
    assert [twilio_final(client, sid).status for sid in sids] == \
        ["delivered", "failed", "delivered"]
    assert sorted(sent_to) == ["+37255550000", ALLOWED]


def test_twilio_message_scheduled_before_the_number_was_blacklisted_fails(
        server: LiveServer, account: Account) -> None:
    sent_to = record_sends(server)
    client = twilio(server, account)
    send_at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    scheduled = client.messages.create(to=BLACKLISTED, from_="+37255500000", body="later",
                                       schedule_type="fixed", send_at=send_at)
    assert scheduled.status == "scheduled"
    blacklist(server, account)
    make_due(server, "-".join((scheduled.sid[2:10], scheduled.sid[10:14], scheduled.sid[14:18],
                               scheduled.sid[18:22], scheduled.sid[22:])))
    failed = twilio_final(client, scheduled.sid)
    assert (failed.status, failed.error_code) == ("failed", 30004)
    assert sent_to == []


def test_nothing_reaches_the_smsc_for_a_blacklisted_number(database_url: str) -> None:
    with cli_smsc() as smsc:
        live = smpp_gateway(database_url, smpp_connector("sim", smsc.port))
        try:
            account = live.call(create_account(live.runtime))
            blacklist(live, account)
            with httpx.Client() as client:
                refused = send(client, live, account, "not for you", BLACKLISTED)
                allowed = send(client, live, account, "for you", ALLOWED)
                assert (wait_final(client, live, account, refused)["status"],
                        wait_final(client, live, account, refused)["err"]) == ("REJECTD", 8)
                assert wait_final(client, live, account, allowed)["status"] == "DELIVRD"
            assert smsc.stats()["submitted"] == 1
        finally:
            live.stop()
