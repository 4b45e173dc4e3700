"""Batched writes that one unit's bad data cannot sink.

A batch is written in one transaction. When the database refuses it for its data (a constraint,
a value out of range, a NUL on PostgreSQL) rather than for being out of reach, every unit is
written again on its own, so the good ones commit and only the bad one is left for its caller's
rule. An unreachable database fails the whole batch: writing units one by one would only fail
each of them more slowly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection

from omnirelay.store.database import Database, unavailable

U = TypeVar("U")


async def write_each(db: Database, units: Sequence[U],
                     work: Callable[[Connection, Sequence[U]], None]
                     ) -> list[tuple[U, Exception]]:
    """Write `units` with `work` in one transaction, or unit by unit if the batch is refused.
    Returns the units the database refused on their own, each with its error; raises
    StoreUnavailable when the database is out of reach."""
    if not units:
        return []
    try:
        await db.write(lambda conn: work(conn, units))
        return []
    except Exception as exc:
        if unavailable(exc):
            raise
        if len(units) == 1:
            return [(units[0], exc)]
    refused: list[tuple[U, Exception]] = []
    for unit in units:
        try:
            await db.write(lambda conn, one=unit: work(conn, [one]))  # type: ignore[misc]
        except Exception as exc:
            if unavailable(exc):
                raise
            refused.append((unit, exc))
    return refused


def describe(exc: BaseException) -> str:
    """One line for a log: the driver's first line, without the statement and parameters that
    SQLAlchemy appends (they can hold message text)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return f"{type(orig or exc).__name__}: {(text.splitlines() or [''])[0][:200]}"
