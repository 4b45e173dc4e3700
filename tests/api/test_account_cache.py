"""The account cache: a bounded LRU that unknown names cannot flush, and a miss that does the
work a hit does. On SQLite and PostgreSQL (the store is real); the equal-work check goes over
HTTP against a live server."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from omnirelay.accounts import SEALED_COLUMNS, AccountCache
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account
from tests.support import LiveServer, create_account, make_settings
from tests.templates import premigrate


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    premigrate(database_url)
    runtime = Runtime(make_settings(database_url))
    runtime.migrate()
    try:
        yield runtime
    finally:
        runtime.close()


class Reads:
    """Counts the store's username look-ups, by name."""

    def __init__(self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        real = runtime.store.account_by_username

        async def counted(username: str) -> Account | None:
            self.names.append(username)
            return await real(username)

        monkeypatch.setattr(runtime.store, "account_by_username", counted)


async def test_a_flood_of_unknown_names_keeps_real_accounts_cached(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    real = [await create_account(runtime, f"tenant{i}") for i in range(3)]
    cache = AccountCache(runtime.store, capacity=10, miss_capacity=50)
    reads = Reads(runtime, monkeypatch)
    for account in real:
        assert await cache.by_username(account.api_username) == account
    for _ in range(500):
        assert await cache.by_username(secrets.token_hex(8)) is None
    reads.names.clear()
    for account in real:
        assert await cache.by_username(account.api_username) == account
    assert reads.names == []  # all three still served from the cache
    assert len(cache) == 3
    assert len(cache._misses) == 50  # the misses are bounded too


async def test_the_least_recently_used_account_goes_first(runtime: Runtime,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = [await create_account(runtime, f"tenant{i}") for i in range(3)]
    cache = AccountCache(runtime.store, capacity=2)
    await cache.by_username(first.api_username)
    await cache.by_username(second.api_username)
    await cache.by_username(first.api_username)  # first is now the most recent
    await cache.by_username(third.api_username)  # pushes out second
    reads = Reads(runtime, monkeypatch)
    await cache.by_username(first.api_username)
    await cache.by_username(third.api_username)
    assert reads.names == []
    await cache.by_username(second.api_username)
    assert reads.names == [second.api_username]
    assert len(cache) == 2


async def test_a_miss_expires_like_an_account(runtime: Runtime) -> None:
    cache = AccountCache(runtime.store, ttl=0.0)
    assert await cache.by_username("user-late") is None
    account = await create_account(runtime, "late")
    assert await cache.by_username("user-late") == account


@pytest.fixture
def live(server: LiveServer) -> Iterator[tuple[LiveServer, Account, list[int]]]:
    """The server with its SecretBox.open spied on: the length of each token it decrypts."""
    account = server.call(create_account(server.runtime))
    box = server.runtime.box
    opened: list[int] = []
    real = box.open

    def spied(token: str) -> str:
        opened.append(len(token))
        return real(token)

    box.open = spied  # type: ignore[method-assign]
    try:
        yield server, account, opened
    finally:
        del box.open


@pytest.mark.parametrize("surface", ["messente", "twilio"])
def test_an_unknown_name_costs_the_decryption_a_known_one_does(live: Any, surface: str) -> None:
    server, account, opened = live
    if surface == "messente":
        path, known = "/v1/omnimessage/x/status", account.api_username
    else:
        path, known = (f"/2010-04-01/Accounts/{account.twilio_account_sid}/Messages.json",
                       account.twilio_account_sid)
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        server.runtime.accounts.forget()
        opened.clear()
        wrong_password = client.get(path, auth=(known, "wrong"))
        for_known = list(opened)
        opened.clear()
        unknown = client.get(path, auth=("AC" + secrets.token_hex(16), "wrong"))
        for_unknown = list(opened)
    assert wrong_password.status_code == unknown.status_code == 401
    assert len(for_known) == len(SEALED_COLUMNS)
    # The same function on tokens of the same length: the same work.
    assert for_unknown == for_known
