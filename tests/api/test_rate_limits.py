"""Per-account accept limits over real HTTP with the official SDKs, on SQLite and PostgreSQL:
beyond the rate a request is answered 429 with Retry-After, in Messente's error format and as
Twilio's 20429, and stores nothing; bulk requests count each omnimessage; other accounts and
unlimited accounts are untouched; on PostgreSQL two gateways share one budget. Time is a clock the
tests move, never a sleep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from messente_api import (
    SMS,
    BulkMessagingApi,
    BulkOmnimessage,
    Omnimessage,
    OmnimessageApi,
    OmnimessageMessagesInner,
)
from messente_api.exceptions import ApiException
from sqlalchemy import func, select
from twilio.base.exceptions import TwilioRestException
from typer.testing import CliRunner

from omnirelay import account_admin as ops
from omnirelay.cli import app
from omnirelay.core.ratelimit import SECOND_US
from omnirelay.store.queries import Account
from omnirelay.store.tables import omnimessages
from tests.api.test_admin import TOKEN, operator
from tests.api.test_blacklist import twilio
from tests.api.test_phonebook import sdk
from tests.spec import assert_matches
from tests.support import LiveServer, create_account, make_settings, start_live_server

TO = "+37255512345"
START = 1_800_000_000 * SECOND_US


class Clock:
    """A clock the test moves: microseconds since the epoch."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * SECOND_US)


@pytest.fixture
def clock(server: LiveServer) -> Clock:
    c = Clock()
    server.runtime.limits.clock = c
    return c


def limited(server: LiveServer, name: str, rate: int | None) -> Account:
    account = server.call(create_account(server.runtime, name))
    if rate is not None:
        account = server.call(ops.change_account(server.runtime, name,
                                                 ops.AccountChanges(max_rps=rate)))
    assert account.max_rps == rate
    return account


def stored(server: LiveServer, account: Account) -> int:
    def work(conn: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(omnimessages)
                                .where(omnimessages.c.account_id == account.id)).scalar_one())
    return server.call(server.runtime.db.read(work))


def omnimessage() -> Omnimessage:
    return Omnimessage(to=TO, messages=[OmnimessageMessagesInner(SMS(text="hello"))])


def refused(call: Any) -> ApiException:
    with pytest.raises(ApiException) as raised:
        call()
    assert raised.value.status == 429
    return raised.value


def check_messente_refusal(error: ApiException, retry_after: int) -> None:
    assert error.headers["Retry-After"] == str(retry_after)
    body = json.loads(error.body)
    assert_matches(body, "ErrorOmnichannel")
    (item,) = body["errors"]
    assert (item["code"], item["title"], item["source"]) == ("102", "Forbidden", None)
    assert "rate limit" in item["detail"] and f"{retry_after} s" in item["detail"]


def test_messente_send_beyond_the_rate_is_429_and_stores_nothing(
        server: LiveServer, clock: Clock) -> None:
    account = limited(server, "acme", 3)
    other = limited(server, "other", 3)
    api = OmnimessageApi(sdk(server, account))
    for _ in range(3):
        api.send_omnimessage(omnimessage())
    check_messente_refusal(refused(lambda: api.send_omnimessage(omnimessage())), 1)
    assert stored(server, account) == 3
    # another account has its own budget
    OmnimessageApi(sdk(server, other)).send_omnimessage(omnimessage())
    clock.advance(0.34)  # a third of a second refills one of the three
    api.send_omnimessage(omnimessage())
    refused(lambda: api.send_omnimessage(omnimessage()))
    clock.advance(1)
    for _ in range(3):
        api.send_omnimessage(omnimessage())
    assert stored(server, account) == 7
    assert stored(server, other) == 1


def test_an_idempotent_replay_spends_no_budget_and_a_refusal_keeps_the_key_free(
        server: LiveServer, clock: Clock) -> None:
    account = limited(server, "acme", 1)
    send = {"to": TO, "messages": [{"channel": "sms", "text": "hello"}]}
    auth = (account.api_username, account.api_password)
    url = server.base_url + "/v1/omnimessage"
    first = httpx.post(url, json=send, auth=auth, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    # The budget is spent, yet the retry of the first request is answered again: it sends
    # nothing, so it is not held to the rate.
    again = httpx.post(url, json=send, auth=auth, headers={"Idempotency-Key": "k-1"})
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    # A new request is refused, and its key stays free for the retry after Retry-After.
    refused_now = httpx.post(url, json=send, auth=auth, headers={"Idempotency-Key": "k-2"})
    assert refused_now.status_code == 429 and refused_now.headers["Retry-After"] == "1"
    clock.advance(1)
    later = httpx.post(url, json=send, auth=auth, headers={"Idempotency-Key": "k-2"})
    assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
    assert later.json()["omnimessage_id"] != first.json()["omnimessage_id"]
    assert stored(server, account) == 2


def test_a_bulk_request_counts_each_omnimessage(server: LiveServer, clock: Clock) -> None:
    account = limited(server, "acme", 5)
    bulk = BulkMessagingApi(sdk(server, account))
    assert len(bulk.send_bulk_omnimessage(
        BulkOmnimessage(messages=[omnimessage()] * 3)).messages) == 3
    # 3 more do not fit in the 2 left: refused whole, nothing stored
    check_messente_refusal(refused(lambda: bulk.send_bulk_omnimessage(
        BulkOmnimessage(messages=[omnimessage()] * 3))), 1)
    assert stored(server, account) == 3
    # a request larger than the whole budget passes when the budget is full, and then holds the
    # account back for as long as it is worth: 10 at 5/s is 2 s
    clock.advance(1)
    bulk.send_bulk_omnimessage(BulkOmnimessage(messages=[omnimessage()] * 10))
    check_messente_refusal(refused(lambda: OmnimessageApi(sdk(server, account))
                                   .send_omnimessage(omnimessage())), 2)
    clock.advance(1.2)
    OmnimessageApi(sdk(server, account)).send_omnimessage(omnimessage())
    assert stored(server, account) == 14


def test_invalid_omnimessages_of_a_bulk_do_not_count(server: LiveServer, clock: Clock) -> None:
    account = limited(server, "acme", 2)
    with httpx.Client(base_url=server.base_url, auth=(account.api_username,
                                                      account.api_password)) as http:
        body = {"messages": [{"to": "nope", "messages": [{"channel": "sms", "text": "x"}]}] * 5
                + [{"to": TO, "messages": [{"channel": "sms", "text": "x"}]}] * 2}
        assert http.post("/v1/omnimessages", json=body).status_code == 201
        answer = http.post("/v1/omnimessage",
                           json={"to": TO, "messages": [{"channel": "sms", "text": "x"}]})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    assert stored(server, account) == 2


def test_twilio_beyond_the_rate_is_20429(server: LiveServer, clock: Clock) -> None:
    account = limited(server, "acme", 2)
    client = twilio(server, account)
    for _ in range(2):
        client.messages.create(to=TO, from_="Acme", body="hi")
    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=TO, from_="Acme", body="hi")
    assert (raised.value.status, raised.value.code) == (429, 20429)
    answer = httpx.post(f"{server.base_url}/2010-04-01/Accounts/{account.twilio_account_sid}"
                        "/Messages.json", auth=(account.twilio_account_sid,
                                                account.twilio_auth_token),
                        data={"To": TO, "From": "Acme", "Body": "hi"})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    body = answer.json()
    assert list(body) == ["code", "message", "more_info", "status"]
    assert (body["code"], body["status"]) == (20429, 429)
    assert body["message"].startswith("Too Many Requests")
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20429"
    assert stored(server, account) == 2
    clock.advance(0.5)
    client.messages.create(to=TO, from_="Acme", body="hi")
    assert stored(server, account) == 3


def test_surfaces_share_one_budget_and_unlimited_is_the_default(
        server: LiveServer, clock: Clock) -> None:
    account = limited(server, "acme", 2)
    OmnimessageApi(sdk(server, account)).send_omnimessage(omnimessage())
    twilio(server, account).messages.create(to=TO, from_="Acme", body="hi")
    refused(lambda: OmnimessageApi(sdk(server, account)).send_omnimessage(omnimessage()))
    free = limited(server, "free", None)
    api = OmnimessageApi(sdk(server, free))
    BulkMessagingApi(sdk(server, free)).send_bulk_omnimessage(
        BulkOmnimessage(messages=[omnimessage()] * 200))
    for _ in range(20):
        api.send_omnimessage(omnimessage())
    assert stored(server, free) == 220


@pytest.fixture
def admin_server(database_url: str) -> Iterator[LiveServer]:
    live = start_live_server(make_settings(database_url, admin={"token": TOKEN}))
    yield live
    live.stop()


def test_the_operator_api_sets_and_clears_the_limits(admin_server: LiveServer) -> None:
    server = admin_server
    server.call(create_account(server.runtime, "acme"))
    with operator(server) as admin:
        assert admin.get("/accounts/acme").json()["max_rps"] is None
        changed = admin.patch("/accounts/acme", json={"max_rps": 50, "max_send_rps": 20})
        assert changed.status_code == 200
        assert (changed.json()["max_rps"], changed.json()["max_send_rps"]) == (50, 20)
        for bad in (-1, 1.5, "fast", True, 1_000_001):
            answer = admin.patch("/accounts/acme", json={"max_rps": bad})
            assert answer.status_code == 400, bad
            assert answer.json()["errors"][0]["source"] == "max_rps"
        assert admin.get("/accounts/acme").json()["max_rps"] == 50
        cleared = admin.patch("/accounts/acme", json={"max_rps": "unlimited", "max_send_rps": 0})
        assert (cleared.json()["max_rps"], cleared.json()["max_send_rps"]) == (None, None)


def test_the_cli_sets_and_clears_the_limits(tmp_path: Path) -> None:
    config = tmp_path / "omnirelay.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/cli.db"\n')
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, [*args, "--config", str(config)])

    assert run("account", "create", "shop").exit_code == 0
    assert run("account", "set", "shop", "--max-rps", "25", "--max-send-rps", "10").exit_code == 0
    shown = json.loads(run("account", "show", "shop", "--json").stdout)
    assert (shown["max_rps"], shown["max_send_rps"]) == (25, 10)
    bad = run("account", "set", "shop", "--max-rps", "lots")
    assert bad.exit_code == 2 and "max_rps must be a whole number" in bad.stderr
    assert run("account", "set", "shop", "--max-rps", "unlimited").exit_code == 0
    assert run("account", "set", "shop", "--max-send-rps", "0").exit_code == 0
    shown = json.loads(run("account", "show", "shop", "--json").stdout)
    assert (shown["max_rps"], shown["max_send_rps"]) == (None, None)


def test_two_gateways_on_one_postgresql_share_one_budget(postgres_url: str) -> None:
    first = start_live_server(make_settings(postgres_url))
    second = start_live_server(make_settings(postgres_url))
    try:
        clock = Clock()
        first.runtime.limits.clock = second.runtime.limits.clock = clock
        account = limited(first, "acme", 4)
        apis = [OmnimessageApi(sdk(s, account)) for s in (first, second)]
        for i in range(4):  # alternating: each gateway admits two, the budget is spent
            apis[i % 2].send_omnimessage(omnimessage())
        for api in apis:
            check_messente_refusal(refused(lambda api=api: api.send_omnimessage(omnimessage())),
                                   1)
        clock.advance(0.5)  # two refilled, for both gateways together
        apis[1].send_omnimessage(omnimessage())
        apis[1].send_omnimessage(omnimessage())
        refused(lambda: apis[0].send_omnimessage(omnimessage()))
        assert stored(first, account) == 6
    finally:
        second.stop()
        first.stop()
