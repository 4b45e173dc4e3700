"""Retention: deleting finished rows older than `[retention]` says, in bounded batches.

Each batch is its own short transaction, so a purge never holds the write lock for long, and a
pass stops after a few batches (the next housekeeping pass goes on). Every batch finds its rows
through an index range, oldest first: omnimessages and inbound messages per account through
(account_id, time, id), webhooks through (state, next_try_at, id) — a finished webhook's
next_try_at is the time of its last try, never later than when it finished. Idempotency keys go
when their window (`[idempotency] window_hours`) has passed, through their created_at index;
number verifications (with their sends and throttles) 30 days after they expired, whatever
`[retention]` says, through their expires_at index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select

from omnirelay.config import RetentionSettings
from omnirelay.core.verification import REMEMBER_COOKIE
from omnirelay.store import idempotency, verification
from omnirelay.store.database import Database
from omnirelay.store.tables import (
    accounts,
    attempts,
    inbound_messages,
    omnimessages,
    provider_refs,
    status_events,
    webhooks,
)

BATCHES_PER_PASS = 10
FINISHED_MESSAGES = ("done", "canceled")
FINISHED_WEBHOOKS = ("done", "dead")


@dataclass(frozen=True, slots=True)
class Purged:
    omnimessages: int = 0
    inbound: int = 0
    webhooks: int = 0
    idempotency_keys: int = 0
    verifications: int = 0


class Retention:
    def __init__(self, db: Database, settings: RetentionSettings,
                 idempotency_window: timedelta | None = None) -> None:
        self.db = db
        self.settings = settings
        self.idempotency_window = idempotency_window

    async def purge(self, now: datetime) -> Purged:
        kept = self.settings
        return Purged(
            omnimessages=await self._purge_each(_cutoff(now, kept.omnimessages_days),
                                                self._omnimessage_batch),
            inbound=await self._purge_each(_cutoff(now, kept.inbound_days), self._inbound_batch),
            webhooks=await self._purge_each(_cutoff(now, kept.webhooks_days),
                                            self._webhook_batch),
            idempotency_keys=await self._purge_each(
                None if self.idempotency_window is None else now - self.idempotency_window,
                lambda conn, before: idempotency.purge_batch(conn, before, kept.batch_size)),
            # Always on: a verification is of no use past its cookie's memory, and keeps
            # personal data (a number, an address).
            verifications=await self._purge_each(
                now - REMEMBER_COOKIE,
                lambda conn, before: verification.purge_batch(conn, before, kept.batch_size)),
        )

    async def _purge_each(self, before: datetime | None,
                          batch: Callable[[Connection, datetime], int]) -> int:
        if before is None:
            return 0
        total = 0
        for _ in range(BATCHES_PER_PASS):
            removed = await self.db.write(lambda conn: batch(conn, before))
            total += removed
            if removed < self.settings.batch_size:
                break
        return total

    def _owners(self, conn: Connection) -> list[int | None]:
        return [*conn.execute(select(accounts.c.id).order_by(accounts.c.id)).scalars(), None]

    def _omnimessage_batch(self, conn: Connection, before: datetime) -> int:
        om = omnimessages.c
        limit = self.settings.batch_size
        ids: list[str] = []
        for owner in self._owners(conn):
            if owner is None or len(ids) >= limit:
                continue
            ids.extend(conn.execute(
                select(om.id).where(om.account_id == owner, om.created_at < before,
                                    om.state.in_(FINISHED_MESSAGES))
                .order_by(om.created_at, om.id).limit(limit - len(ids))).scalars())
        if not ids:
            return 0
        attempt_ids = list(conn.execute(select(attempts.c.id).where(
            attempts.c.omnimessage_id.in_(ids))).scalars())
        if attempt_ids:
            conn.execute(delete(status_events).where(status_events.c.attempt_id.in_(attempt_ids)))
            conn.execute(delete(provider_refs).where(provider_refs.c.attempt_id.in_(attempt_ids)))
            conn.execute(delete(attempts).where(attempts.c.id.in_(attempt_ids)))
        return int(conn.execute(delete(omnimessages).where(om.id.in_(ids))).rowcount)

    def _inbound_batch(self, conn: Connection, before: datetime) -> int:
        ib = inbound_messages.c
        limit = self.settings.batch_size
        ids: list[str] = []
        for owner in self._owners(conn):
            if len(ids) >= limit:
                break
            whose = ib.account_id.is_(None) if owner is None else ib.account_id == owner
            ids.extend(conn.execute(
                select(ib.id).where(whose, ib.received_at < before)
                .order_by(ib.received_at, ib.id).limit(limit - len(ids))).scalars())
        return _delete_ids(conn, inbound_messages.c.id, ids)

    def _webhook_batch(self, conn: Connection, before: datetime) -> int:
        w = webhooks.c
        limit = self.settings.batch_size
        ids: list[int] = []
        for state in FINISHED_WEBHOOKS:
            if len(ids) < limit:
                ids.extend(conn.execute(
                    select(w.id).where(w.state == state, w.next_try_at < before)
                    .order_by(w.next_try_at, w.id).limit(limit - len(ids))).scalars())
        return _delete_ids(conn, w.id, ids)


def _delete_ids(conn: Connection, column: Any, ids: Sequence[Any]) -> int:
    if not ids:
        return 0
    return int(conn.execute(delete(column.table).where(column.in_(list(ids)))).rowcount)


def _cutoff(now: datetime, days: int) -> datetime | None:
    return None if days <= 0 else now - timedelta(days=days)
