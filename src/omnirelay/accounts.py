"""A short-lived cache of accounts, so that authenticating a request or signing a webhook does
not cost a database read each time. Entries live a few seconds, so rotated credentials take
effect quickly in every process.

Two things keep unknown names from telling anything or pushing real accounts out. A lookup that
finds no account does the decryption work a found one does (on a stand-in), so the answer
takes as long either way. And accounts and misses are kept apart, each in a bounded LRU: random
names can only push out other misses.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from omnirelay.core.secrets import new_password
from omnirelay.store.queries import Account, Store
from omnirelay.store.tables import accounts

TTL_SECONDS = 5.0
CAPACITY = 10_000  # accounts
MISS_CAPACITY = 1_000  # names recently not found

# The secrets the store decrypts to build an Account: a miss decrypts as many stand-ins.
SEALED_COLUMNS = tuple(c.name for c in accounts.c if c.name.endswith("_enc"))

Key = tuple[str, object]
V = TypeVar("V")


class AccountCache:
    def __init__(self, store: Store, ttl: float = TTL_SECONDS, capacity: int = CAPACITY,
                 miss_capacity: int = MISS_CAPACITY) -> None:
        self.store = store
        self.ttl = ttl
        self.capacity = capacity
        self.miss_capacity = miss_capacity
        self._entries: OrderedDict[Key, tuple[float, Account]] = OrderedDict()
        self._misses: OrderedDict[Key, float] = OrderedDict()
        # As long as the generated secrets, so that it decrypts in the same time.
        self._stand_in = store.box.seal(new_password())

    async def by_username(self, username: str) -> Account | None:
        return await self._get(("username", username), lambda: self.store.account_by_username(username))

    async def by_sid(self, sid: str) -> Account | None:
        return await self._get(("sid", sid), lambda: self.store.account_by_sid(sid))

    async def by_id(self, account_id: int) -> Account | None:
        return await self._get(("id", account_id), lambda: self.store.account_by_id(account_id))

    def forget(self) -> None:
        self._entries.clear()
        self._misses.clear()

    def __len__(self) -> int:
        return len(self._entries)

    async def _get(self, key: Key, load: Callable[[], Awaitable[Account | None]]) -> Account | None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > now:
                self._entries.move_to_end(key)
                return entry[1]
            del self._entries[key]
        missed_until = self._misses.get(key)
        if missed_until is not None:
            if missed_until > now:
                return None
            del self._misses[key]
        account = await load()
        if account is None:
            self._equal_work()
            _put(self._misses, key, now + self.ttl, self.miss_capacity)
        else:
            _put(self._entries, key, (now + self.ttl, account), self.capacity)
        return account

    def _equal_work(self) -> None:
        for _column in SEALED_COLUMNS:
            self.store.box.open(self._stand_in)


def _put(entries: OrderedDict[Key, V], key: Key, value: V, capacity: int) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > capacity:
        entries.popitem(last=False)
