"""Idempotency-Key on the Twilio create, through the official twilio SDK (its HTTP client adds the
header), on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from omnirelay.store.queries import Account
from omnirelay.store.tables import omnimessages
from tests.support import LiveServer, create_account
from tests.twilio.conftest import create


class KeyedHttpClient(TwilioHttpClient):
    """The SDK's own client, sending an Idempotency-Key with every request."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def request(self, method: str, url: str, params: Any = None, data: Any = None,
                headers: dict[str, str] | None = None, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, url, params, data,
                               {**(headers or {}), "Idempotency-Key": self.key}, *args, **kwargs)


def keyed(server: LiveServer, account: Account, key: str) -> Client:
    client = Client(account.twilio_account_sid, account.twilio_auth_token, environment={},
                    http_client=KeyedHttpClient(key))
    client.api.base_url = server.base_url
    return client


def stored(server: LiveServer) -> int:
    with server.runtime.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(omnimessages)).scalar_one())


def test_a_retried_create_answers_the_same_message_and_sends_once(
        server: LiveServer, account: Account) -> None:
    client = keyed(server, account, "create-1")
    first = create(client, body="Your code is 1234")
    again = create(client, body="Your code is 1234")
    assert again.sid == first.sid
    assert again.date_created == first.date_created  # the first answer, not a new one
    assert stored(server) == 1
    # The form's field order is not part of the request.
    raw = httpx.post(f"{server.base_url}{first.uri.replace(f'/{first.sid}', '')}",
                     content="Body=Your+code+is+1234&From=%2B37255500000&To=%2B37255512345",
                     headers={"Idempotency-Key": "create-1",
                              "Content-Type": "application/x-www-form-urlencoded"},
                     auth=(account.twilio_account_sid, account.twilio_auth_token))
    assert raw.status_code == 201 and raw.json()["sid"] == first.sid
    assert raw.headers["idempotent-replayed"] == "true"


def test_another_body_under_the_same_key_is_a_twilio_422(
        server: LiveServer, account: Account) -> None:
    client = keyed(server, account, "create-2")
    create(client, body="one")
    with pytest.raises(TwilioRestException) as refused:
        create(client, body="two")
    assert (refused.value.status, refused.value.code) == (422, 20001)
    assert "different parameters" in refused.value.msg
    assert stored(server) == 1


def test_an_unusable_key_is_a_twilio_400(server: LiveServer, account: Account) -> None:
    with pytest.raises(TwilioRestException) as refused:
        create(keyed(server, account, "k" * 256), body="one")
    assert (refused.value.status, refused.value.code) == (400, 20001)
    assert "at most 255" in refused.value.msg
    assert stored(server) == 0


def test_keys_are_per_account_and_per_surface(server: LiveServer, account: Account) -> None:
    other = server.call(create_account(server.runtime, "other"))
    mine = create(keyed(server, account, "same"))
    theirs = create(keyed(server, other, "same"))
    assert mine.sid != theirs.sid
    # The account's Messente send with the same key is another request.
    sent = httpx.post(server.base_url + "/v1/omnimessage", headers={"Idempotency-Key": "same"},
                      json={"to": "+37255512345", "messages": [{"channel": "sms",
                                                                 "text": "hello"}]},
                      auth=(account.api_username, account.api_password))
    assert sent.status_code == 422 and sent.json()["errors"][0]["code"] == "105"
    assert stored(server) == 2


def test_concurrent_creates_with_one_key_send_once(server: LiveServer, account: Account) -> None:
    with ThreadPoolExecutor(6) as pool:  # a client each: one requests.Session per thread
        sids = set(pool.map(lambda _: create(keyed(server, account, "burst")).sid, range(6)))
    assert len(sids) == 1
    assert stored(server) == 1
