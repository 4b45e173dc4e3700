"""The gateway with the Twilio surface installed, and the official twilio SDK pointed at it.

`database_url` (tests/conftest.py) runs every test on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twilio.rest import Client

from omnirelay.store.queries import Account
from tests.support import LiveServer, create_account, make_settings, start_live_server


@pytest.fixture
def server(database_url: str) -> Iterator[LiveServer]:
    # Quick receipts, quick expiry, and webhook retries within a test's patience.
    settings = make_settings(database_url, engine={"poll_interval": 0.2},
                             webhooks={"backoff_base": 0.2, "backoff_factor": 1.0,
                                       "jitter": 0.0})
    live = start_live_server(settings)
    yield live
    live.stop()


@pytest.fixture
def account(server: LiveServer) -> Account:
    return server.call(create_account(server.runtime))


def sdk(server: LiveServer, sid: str, token: str) -> Client:
    # No region/edge: they rewrite the host; api.base_url covers api.twilio.com (ref. §5.1).
    client = Client(sid, token, environment={})  # ignore TWILIO_* variables
    client.api.base_url = server.base_url
    return client


@pytest.fixture
def client(server: LiveServer, account: Account) -> Client:
    return sdk(server, account.twilio_account_sid, account.twilio_auth_token)


def create(client: Client, **kwargs: Any) -> Any:
    fields: dict[str, Any] = {"to": "+37255512345", "from_": "+37255500000", "body": "hello"}
    fields.update(kwargs)
    return client.messages.create(**fields)
