"""A short-lived cache of accounts, so that authenticating a request or signing a webhook does
not cost a database read each time. Entries live a few seconds, so rotated credentials take
effect quickly in every process."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from omnirelay.store.queries import Account, Store

TTL_SECONDS = 5.0


class AccountCache:
    def __init__(self, store: Store, ttl: float = TTL_SECONDS) -> None:
        self.store = store
        self.ttl = ttl
        self._entries: dict[tuple[str, object], tuple[float, Account | None]] = {}

    async def by_username(self, username: str) -> Account | None:
        return await self._get(("username", username), lambda: self.store.account_by_username(username))

    async def by_sid(self, sid: str) -> Account | None:
        return await self._get(("sid", sid), lambda: self.store.account_by_sid(sid))

    async def by_id(self, account_id: int) -> Account | None:
        return await self._get(("id", account_id), lambda: self.store.account_by_id(account_id))

    def forget(self) -> None:
        self._entries.clear()

    async def _get(self, key: tuple[str, object],
                   load: Callable[[], Awaitable[Account | None]]) -> Account | None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        account = await load()
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (now + self.ttl, account)
        return account
