"""Per-country totals of what an account sent, for POST /statistics/reports.

The report reads one range of `ix_attempts_account_sent` (account, sent_at): an account's attempts
submitted within the dates, whatever the table's size; the rest of the account's history and every
other account's are never touched. Counted are the attempts that were charged (claimed and
submitted, not refunded), each once, with what they were charged. Number lookups are message type
`hlr`: each looked-up number counts once with its charge, read likewise from one range of
`ix_number_lookups_account_time`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, select

from omnirelay.store.database import Database
from omnirelay.store.number_lookup import CHANNEL as LOOKUP_CHANNEL
from omnirelay.store.tables import attempts, number_lookups

_a = attempts.c
_l = number_lookups.c


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


def lookup_statement(account_id: int, start: datetime, end: datetime) -> Select[Any]:
    """Number lookups made in [start, end)."""
    return (select(_l.country, func.count(), func.coalesce(func.sum(_l.price_micros), 0))
            .where(_l.account_id == account_id, _l.created_at >= start, _l.created_at < end)
            .group_by(_l.country).order_by(_l.country))


async def country_totals(db: Database, account_id: int, start: datetime, end: datetime,
                         channels: Sequence[str] | None = None) -> list[tuple[str, int, int]]:
    """(alpha-2 code or "", messages, micro-units) per country."""
    statements = []
    if channels is None or any(c != LOOKUP_CHANNEL for c in channels):
        statements.append(report_statement(
            account_id, start, end, None if channels is None else
            [c for c in channels if c != LOOKUP_CHANNEL]))
    if channels is None or LOOKUP_CHANNEL in channels:
        statements.append(lookup_statement(account_id, start, end))

    def work(conn: Connection) -> list[tuple[str, int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for statement in statements:
            for code, count, price in conn.execute(statement):
                seen = totals.get(code or "", (0, 0))
                totals[code or ""] = (seen[0] + int(count), seen[1] + int(price))
        return [(code, count, price) for code, (count, price) in sorted(totals.items())]

    return await db.read(work)
