"""Charging and recording number lookups.

A request's numbers are charged together, before any provider is asked, in one transaction: the
price of each (the account's `hlr` price for the number's country, as core.pricing picks it) is
summed and taken off the balance with the same conditional update a message's charge uses, so
concurrent lookups never take a balance below zero; a balance that does not cover the whole
request takes nothing and records nothing. Each number becomes a `number_lookups` row, which the
statistics count. When the provider then cannot answer, `give_back` deletes the request's rows and
returns their charge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select

from omnirelay.store.database import Database
from omnirelay.store.pricing import country_prices, debit, refund
from omnirelay.store.tables import number_lookups

CHANNEL = "hlr"  # the price list's channel for lookups, and the statistics' message type


@dataclass(frozen=True, slots=True)
class Charge:
    prices: list[int]  # micro-units per number, in the request's order
    covered: bool  # False: the balance did not cover them, nothing was taken or recorded

    @property
    def total(self) -> int:
        return sum(self.prices)


async def charge_lookups(db: Database, account_id: int, request_id: str,
                         numbers: Sequence[tuple[str, str]], now: datetime) -> Charge:
    """Charge and record (number, alpha-2 country or "") lookups, all or none."""
    def work(conn: Connection) -> Charge:
        price = country_prices(conn, account_id, CHANNEL, (c for _n, c in numbers))
        prices = [price.get(country, 0) for _number, country in numbers]
        if not debit(conn, account_id, sum(prices), now):
            return Charge(prices, covered=False)
        conn.execute(insert(number_lookups), [
            {"account_id": account_id, "request_id": request_id, "number": number,
             "country": country or None, "price_micros": cost, "created_at": now}
            for (number, country), cost in zip(numbers, prices, strict=True)])
        return Charge(prices, covered=True)

    return await db.write(work)


async def give_back(db: Database, account_id: int, request_id: str, now: datetime) -> None:
    """Undo a request's charge and records (its provider did not answer)."""
    scope = (number_lookups.c.account_id == account_id,
             number_lookups.c.request_id == request_id)

    def work(conn: Connection) -> None:
        cost = conn.execute(select(func.coalesce(func.sum(number_lookups.c.price_micros), 0))
                            .where(*scope)).scalar()
        conn.execute(delete(number_lookups).where(*scope))
        refund(conn, account_id, int(cost or 0), now)

    await db.write(work)
