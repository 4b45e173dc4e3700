"""The history endpoints over live HTTP, on SQLite and PostgreSQL: search, one message whole with
its timeline and reports, inbound, paging while messages arrive, isolation, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from omnirelay.core.delivery import InboundMessage
from omnirelay.core.timefmt import utcnow
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    messente_signed,
    start_live_server,
    wait_until,
)

DELIVERED = "+37255512345"
FALLBACK = "+37255519981"  # the sandbox: UNDELIV on chat channels, DELIVRD on SMS
FINAL = {"DELIVRD", "UNDELIV", "FAILED", "REJECTD", "EXPIRED", "SEEN"}


def client(server: LiveServer, account: Any) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + "/v1",
                        auth=(account.api_username, account.api_password), timeout=10)


def send(api: httpx.Client, to: str, messages: list[dict[str, Any]], **extra: Any) -> str:
    response = api.post("/omnimessage", json={"to": to, "messages": messages, **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["omnimessage_id"])


def sms(text: str = "hello") -> dict[str, Any]:
    return {"channel": "sms", "text": text, "sender": "Shop"}


def viber(text: str = "hello") -> dict[str, Any]:
    return {"channel": "viber", "text": text, "sender": "Shop"}


def settled(api: httpx.Client, omnimessage_id: str) -> dict[str, Any]:
    """The message once no attempt is in flight any more."""
    def done() -> dict[str, Any] | None:
        body = api.get(f"/omnimessage/{omnimessage_id}").json()
        busy = [a for a in body["attempts"] if a["state"] in ("due", "sending", "sent")]
        return None if busy or body["state"] != "done" else body

    return wait_until(done)  # type: ignore[no-any-return]


def ids(page: dict[str, Any]) -> list[str]:
    return [m["omnimessage_id"] for m in page["omnimessages"]]


def test_a_fallback_chain_is_found_under_each_filter_and_has_its_timeline(
        server: LiveServer, account: Any, receiver: WebhookReceiver) -> None:
    with client(server, account) as api:
        chain = send(api, FALLBACK, [viber(), sms()], dlr_url=receiver.url + "/dlr")
        plain = send(api, DELIVERED, [sms()])
        whole = settled(api, chain)
        settled(api, plain)

        viber_attempt, sms_attempt = whole["attempts"]
        assert (viber_attempt["channel"], viber_attempt["status"]) == ("viber", "UNDELIV")
        assert (sms_attempt["channel"], sms_attempt["status"]) == ("sms", "DELIVRD")
        assert [e["event"] for e in viber_attempt["timeline"]] == ["submitted", "status"]
        assert viber_attempt["timeline"][1]["source"] == "receipt"
        assert [e["event"] for e in sms_attempt["timeline"]] == ["started", "submitted", "status"]
        assert sms_attempt["timeline"][0]["source"] == "fallback"
        times = [e["at"] for a in (viber_attempt, sms_attempt) for e in a["timeline"]]
        assert times == sorted(times)
        assert sms_attempt["content"]["text"] == "hello"  # plaintext is the default retention

        def delivered_reports() -> list[dict[str, Any]] | None:
            reports = api.get(f"/omnimessage/{chain}").json()["reports"]
            done = [r for r in reports if r["state"] == "delivered"]
            return done if len(done) == 2 else None

        reports = wait_until(delivered_reports)
        assert {(r["message_id"], r["status"]) for r in reports} == {
            (viber_attempt["message_id"], "UNDELIV"), (sms_attempt["message_id"], "DELIVRD")}
        assert all(r["receiver"].startswith("127.0.0.1:") for r in reports)

        def found(**params: str) -> list[str]:
            response = api.get("/omnimessages", params=params)
            assert response.status_code == 200, response.text
            return ids(response.json())

        assert found() == [plain, chain]
        assert found(to=FALLBACK) == [chain]
        assert found(to="+372 5551 9981") == [chain]  # normalised like the send
        assert found(channel="viber") == [chain]
        assert found(channel="sms") == [plain, chain]
        assert found(status="UNDELIV") == [chain]
        assert found(status="DELIVRD") == [plain, chain]
        assert found(status="FAILED") == []
        assert found(surface="messente") == [plain, chain]
        assert found(surface="twilio") == []
        created = whole["created"]
        assert found(since=created) == [plain, chain]
        assert found(until=created) == []


def test_scheduled_and_cancelled_messages_show_their_states(
        server: LiveServer, account: Any) -> None:
    later = (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with client(server, account) as api:
        kept = send(api, DELIVERED, [sms()], time_to_send=later)
        dropped = send(api, DELIVERED, [viber(), sms()], time_to_send=later)
        assert api.delete(f"/omnimessage/{dropped}").status_code == 202

        scheduled = api.get(f"/omnimessage/{kept}").json()
        assert scheduled["state"] == "scheduled"
        assert scheduled["time_to_send"].startswith(later[:16])
        assert [a["state"] for a in scheduled["attempts"]] == ["due"]
        assert scheduled["attempts"][0]["timeline"] == []

        cancelled = api.get(f"/omnimessage/{dropped}").json()
        assert cancelled["state"] == "canceled"
        # The status keeps the spec's shape, which has no word for it (README says so).
        assert api.get(f"/omnimessage/{dropped}/status").json() == {
            "statuses": [], "to": cancelled["to"], "omnimessage_id": dropped}
        assert [[e["event"] for e in a["timeline"]] for a in cancelled["attempts"]] == [
            ["canceled"], ["canceled"]]
        states = {m["omnimessage_id"]: m["state"]
                  for m in api.get("/omnimessages").json()["omnimessages"]}
        assert states == {kept: "scheduled", dropped: "canceled"}


def test_paging_while_messages_arrive_neither_repeats_nor_skips(
        server: LiveServer, account: Any) -> None:
    later = (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with client(server, account) as api:
        before = [send(api, DELIVERED, [sms()], time_to_send=later) for _ in range(12)]
        seen: list[str] = []
        arrived: list[str] = []
        page = api.get("/omnimessages", params={"limit": 5}).json()
        pages = 1
        while True:
            seen.extend(ids(page))
            arrived.append(send(api, DELIVERED, [sms()], time_to_send=later))
            if page["next"] is None:
                break
            page = api.get("/omnimessages", params={"limit": 5, "next": page["next"]}).json()
            pages += 1
        assert pages == 3
        assert seen == list(reversed(before))
        assert ids(api.get("/omnimessages", params={"limit": 500}).json()) == \
            list(reversed(before + arrived))


def test_inbound_is_listed_with_its_callback_state(
        server: LiveServer, receiver: WebhookReceiver) -> None:
    runtime = server.runtime
    number = "+37255500001"
    account = server.call(create_account(runtime, "inbox", inbound_url=receiver.url + "/in"))
    server.call(runtime.store.set_inbound_numbers(account.id, [number]))
    now = utcnow()
    server.call(runtime.sink.store_inbound([
        InboundMessage("sms", "+37255512345", number, "first", now - timedelta(seconds=2)),
        InboundMessage("sms", "+37255567890", number, "second", now - timedelta(seconds=1)),
        InboundMessage("sms", "+37255512345", "+37255500002", "nobody's", now),
    ]))
    with client(server, account) as api:
        listed = wait_until(lambda: (body := api.get("/inbound").json())["inbound"]
                            and all(i["callback"] == "delivered" for i in body["inbound"])
                            and body)
        assert [i["text"] for i in listed["inbound"]] == ["second", "first"]
        assert listed["inbound"][0]["from"] == "+37255567890"
        assert listed["inbound"][0]["to"] == number
        only = api.get("/inbound", params={"from": "+372 5551 2345"}).json()
        assert [i["text"] for i in only["inbound"]] == ["first"]
        paged = api.get("/inbound", params={"limit": 1}).json()
        assert [i["text"] for i in paged["inbound"]] == ["second"]
        rest = api.get("/inbound", params={"limit": 1, "next": paged["next"]}).json()
        assert [i["text"] for i in rest["inbound"]] == ["first"]
        assert rest["next"] is None


def test_every_history_endpoint_is_scoped_to_the_callers_account(
        server: LiveServer, account: Any) -> None:
    other = server.call(create_account(server.runtime, "other"))
    later = (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with client(server, account) as mine, client(server, other) as theirs:
        sent = [send(mine, DELIVERED, [sms()], time_to_send=later) for _ in range(3)]
        own_page = mine.get("/omnimessages", params={"limit": 1}).json()
        assert own_page["next"] is not None

        assert ids(theirs.get("/omnimessages").json()) == []
        assert ids(theirs.get("/omnimessages", params={"to": DELIVERED}).json()) == []
        # A cursor is a position, not a permission: account A's cursor shows B nothing of A's.
        stolen = theirs.get("/omnimessages", params={"next": own_page["next"]})
        assert stolen.status_code == 200
        assert ids(stolen.json()) == []
        for omnimessage_id in sent:
            answer = theirs.get(f"/omnimessage/{omnimessage_id}")
            assert answer.status_code == 404
            assert answer.json()["errors"][0]["code"] == "101"
        assert theirs.get("/inbound").json()["inbound"] == []


@pytest.mark.parametrize(("params", "source"), [
    ({"colour": "red"}, "colour"),
    ({"to": "not a number"}, "to"),
    ({"to": "+3725551234\x00"}, "to"),
    ({"channel": "fax"}, "channel"),
    ({"status": "delivered"}, "status"),
    ({"surface": "smpp"}, "surface"),
    ({"since": "yesterday"}, "since"),
    ({"until": "9999-12-31T23:59:59-23:59"}, "until"),
    ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "since"),
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "\u0661\u0660"}, "limit"),  # Arabic-Indic digits
    ({"next": "garbage"}, "next"),
    ({"next": "W1siMjAyNi0xMi0wMVQwMDowMDowMCIsICJ4Il1d.AAAA"}, "next"),
])
def test_bad_filters_answer_400_naming_the_parameter(
        server: LiveServer, account: Any, params: dict[str, str], source: str) -> None:
    with client(server, account) as api:
        answer = api.get("/omnimessages", params=params)
        assert answer.status_code == 400, answer.text
        error = answer.json()["errors"][0]
        assert (error["code"], error["source"]) == ("105", source)


def test_a_cursor_of_one_listing_is_refused_by_the_other(
        server: LiveServer, account: Any) -> None:
    later = (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with client(server, account) as api:
        for _ in range(2):
            send(api, DELIVERED, [sms()], time_to_send=later)
        cursor = api.get("/omnimessages", params={"limit": 1}).json()["next"]
        edited = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
        assert api.get("/omnimessages", params={"next": edited}).status_code == 400
        answer = api.get("/inbound", params={"next": cursor})
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["source"] == "next"


def test_history_needs_credentials(server: LiveServer, account: Any) -> None:
    for path in ("/v1/omnimessages", "/v1/inbound", "/v1/omnimessage/x"):
        anonymous = httpx.get(server.base_url + path)
        assert anonymous.status_code == 401
        wrong = httpx.get(server.base_url + path, auth=(account.api_username, "wrong"))
        assert wrong.status_code == 401
    with client(server, account) as api:
        assert api.get("/omnimessage/" + "x" * 100).status_code == 404
        assert api.get("/omnimessage/abc%00def").status_code == 404


@pytest.fixture
def one_try_server(database_url: str) -> Iterator[LiveServer]:
    """Webhooks get one try each, so a receiver that is down makes them dead at once."""
    live = start_live_server(make_settings(database_url, webhooks={"max_tries": 1}))
    yield live
    live.stop()


def test_dead_reports_are_redelivered_once_each_signed_and_in_order(
        one_try_server: LiveServer, receiver: WebhookReceiver) -> None:
    server = one_try_server
    account = server.call(create_account(server.runtime))
    receiver.status = 503
    with client(server, account) as api:
        chains = [send(api, FALLBACK, [viber(), sms()], dlr_url=receiver.url + "/dlr")
                  for _ in range(3)]
        dead = wait_until(lambda: len(rows := api.get(
            "/webhooks", params={"state": "dead"}).json()["webhooks"]) == 6 and rows)
        assert {w["omnimessage_id"] for w in dead} == set(chains)
        assert all(w["tries"] == 1 and "503" in (w["last_error"] or "") for w in dead)
        assert {w["status_code"] for w in dead} == {503}
        failed_tries = receiver.attempts
        assert api.get("/webhooks", params={"state": "pending"}).json()["webhooks"] == []

        receiver.status = 200
        answer = api.post("/webhooks/redeliver", json={"state": "dead"})
        assert answer.status_code == 202, answer.text
        assert sorted(answer.json()["redelivered"]) == sorted(w["id"] for w in dead)
        delivered = wait_until(lambda: len(rows := api.get(
            "/webhooks", params={"state": "delivered"}).json()["webhooks"]) == 6 and rows)
        assert len(receiver.received) == 6
        assert {w["status_code"] for w in delivered} == {200}
        assert all(w["last_error"] is None for w in delivered)
        assert receiver.attempts == failed_tries + 6  # each once more, no extra tries
        assert all(messente_signed(r, account.api_password) for r in receiver.received)
        for chain in chains:
            per_message = [r.json()["status"] for r in receiver.received
                           if r.json()["omnimessage_id"] == chain]
            assert per_message == ["UNDELIV", "DELIVRD"]  # the order they were raised in

        # Again, one by id: the same bytes, the same signature.
        first = delivered[-1]
        body_before = next(r.body for r in receiver.received
                           if r.json()["message_id"] == first["message_id"])
        again = api.post(f"/webhooks/{first['id']}/redeliver")
        assert again.status_code == 202 and again.json()["state"] == "pending"
        wait_until(lambda: len(receiver.received) == 7)
        assert receiver.received[-1].body == body_before
        assert messente_signed(receiver.received[-1], account.api_password)

        assert api.post("/webhooks/999999/redeliver").status_code == 404
        assert api.post("/webhooks/redeliver", json={"state": "pending"}).status_code == 400
        assert api.post("/webhooks/redeliver", json={"limit": 0}).status_code == 400


def test_another_accounts_webhooks_are_neither_listed_nor_redelivered(
        one_try_server: LiveServer, receiver: WebhookReceiver) -> None:
    server = one_try_server
    owner = server.call(create_account(server.runtime, "owner"))
    other = server.call(create_account(server.runtime, "other"))
    receiver.status = 503
    with client(server, owner) as mine, client(server, other) as theirs:
        send(mine, DELIVERED, [sms()], dlr_url=receiver.url + "/dlr")
        dead = wait_until(lambda: mine.get("/webhooks", params={"state": "dead"}).json()["webhooks"])
        assert theirs.get("/webhooks").json()["webhooks"] == []
        assert theirs.post(f"/webhooks/{dead[0]['id']}/redeliver").status_code == 404
        assert theirs.post("/webhooks/redeliver", json={}).json()["redelivered"] == []
        assert mine.get("/webhooks", params={"state": "dead"}).json()["webhooks"] == dead
