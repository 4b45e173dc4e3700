"""Per-country totals of what an account sent, for POST /statistics/reports.

The report reads one range of `ix_attempts_account_sent` (account, sent_at): an account's attempts
submitted within the dates, whatever the table's size; the rest of the account's history and every
other account's are never touched. Counted are the attempts that were charged (claimed and
submitted, not refunded), each once, with what they were charged."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, select

from omnirelay.store.database import Database
from omnirelay.store.tables import attempts

_a = attempts.c


def report_statement(account_id: int, start: datetime, end: datetime,
                     channels: Sequence[str] | None = None) -> Select[Any]:
    """Attempts submitted in [start, end); `channels` None: every channel."""
    query = (select(_a.country, func.count(),
                    func.coalesce(func.sum(_a.part_price_micros * _a.charged_parts), 0))
             .where(_a.account_id == account_id, _a.sent_at >= start, _a.sent_at < end,
                    _a.charged_parts.is_not(None)))
    if channels is not None:
        query = query.where(_a.channel.in_(list(channels)))
    return query.group_by(_a.country).order_by(_a.country)


async def country_totals(db: Database, account_id: int, start: datetime, end: datetime,
                         channels: Sequence[str] | None = None) -> list[tuple[str, int, int]]:
    """(alpha-2 code or "", messages, micro-units) per country."""
    statement = report_statement(account_id, start, end, channels)

    def work(conn: Connection) -> list[tuple[str, int, int]]:
        return [(r[0] or "", int(r[1]), int(r[2])) for r in conn.execute(statement)]

    return await db.read(work)
