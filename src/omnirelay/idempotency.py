"""Idempotency keys in one process: one request at a time per (account, key), then its answer.

A client that timed out retries with the same key, and the retry may arrive while the first
request is still being stored. Within a process the retry waits here for the first to finish,
then finds its stored answer (or, if the first stored nothing, goes ahead itself). Between
processes on PostgreSQL the table's primary key does the same: the second insert waits for the
first transaction and is refused when it commits (store.idempotency.KeyTaken), and the loser
answers with the winner's stored answer. Either way one key sends once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from omnirelay.core.timefmt import utcnow
from omnirelay.store.idempotency import KeyRecord, KeyTaken, Remembered
from omnirelay.store.queries import Store

R = TypeVar("R")
Slot = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to handle a key's first request; `record` is what the accept commits."""

    account_id: int
    key: str
    fingerprint: str
    since: datetime  # the start of the window: an older row no longer counts

    def record(self, status: int, body: bytes) -> KeyRecord:
        return KeyRecord(self.account_id, self.key, self.fingerprint, status, body, self.since)


class Idempotency:
    def __init__(self, store: Store, window_hours: float) -> None:
        self.store = store
        self.window = timedelta(hours=window_hours)
        self._running: dict[Slot, asyncio.Event] = {}
        self._waiting: Counter[Slot] = Counter()

    async def run(self, account_id: int, key: str, fingerprint: str,
                  handle: Callable[[Claim], Awaitable[R]]) -> R | Remembered:
        """The answer stored under the key within the window, else what `handle` answers (it
        stores the key with its accept, or nothing at all when it refuses the request). The
        caller compares a stored answer's fingerprint with its own request's."""
        slot = (account_id, key)
        while (running := self._running.get(slot)) is not None:
            self._waiting[slot] += 1
            try:
                await running.wait()
            finally:
                self._waiting[slot] -= 1
                if not self._waiting[slot]:
                    del self._waiting[slot]
        done = asyncio.Event()
        self._running[slot] = done
        try:
            since = utcnow() - self.window
            found = await self.store.remembered(account_id, key, since)
            if found is not None:
                return found
            try:
                return await handle(Claim(account_id, key, fingerprint, since))
            except KeyTaken as taken:
                return taken.found
        finally:
            del self._running[slot]
            done.set()

    # for tests and diagnostics -------------------------------------------------------------

    def running(self, account_id: int, key: str) -> bool:
        """A request with this key is being handled in this process now."""
        return (account_id, key) in self._running

    def waiting(self, account_id: int, key: str) -> int:
        """How many requests with this key wait for the one being handled."""
        return self._waiting[(account_id, key)]
