"""Price lists, prepaid balances and the charge each submitted attempt pays.

The charge is taken when an attempt is claimed for submission, in the claim's own transaction and
before any upstream sees the message, with one conditional UPDATE per attempt
(`amount = amount - cost WHERE amount >= cost`): two processes charging the same balance are
serialised by the row lock and the second re-checks the condition against the first's result, so
the balance never goes below zero. An attempt the balance does not cover is failed there with err 4
(Error crediting account) and never sent; its chain falls back to its next variant, which is
charged in turn. An account without a balance row is unlimited.

When the upstream has answered, `settle` puts right what the claim could only foresee: an attempt
put back for a retry, or refused at submit, gets its charge back (a retry is charged again when it
is claimed again); one the upstream split into more or fewer parts pays for the parts it took.
An attempt whose lease ran out keeps its charge and is not charged a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update

from omnirelay.core.pricing import PriceRow, country_of, effective, part_price, parts_of
from omnirelay.store.database import Database
from omnirelay.store.statements import batch_update
from omnirelay.store.tables import attempts, balances, prices

log = logging.getLogger(__name__)

_debit = (update(balances)
          .where(balances.c.account_id == bindparam("a"),
                 balances.c.amount_micros >= bindparam("cost"))
          .values(amount_micros=balances.c.amount_micros - bindparam("cost"),
                  updated_at=bindparam("now")))
_credit = (update(balances).where(balances.c.account_id == bindparam("a"))
           .values(amount_micros=balances.c.amount_micros + bindparam("cost"),
                   updated_at=bindparam("now")))
# Every claim and every send outcome runs the statements below: built once, as the store's other
# hot statements are (store.statements), since building a select and its cache key each call
# cost more than running it. The per-attempt update goes to the driver as it is.
_record_charge = batch_update(
    attempts, values={"country": "country", "part_price_micros": "price", "charged_parts": "parts"},
    match={"id": "mid"},
    types={"mid": "text", "country": "text", "price": "bigint", "parts": "integer"})
_set_charged_parts = (update(attempts).where(attempts.c.id == bindparam("mid"))
                      .values(charged_parts=bindparam("parts")))
_has_balance = select(balances.c.account_id).where(balances.c.account_id == bindparam("a"))
_limited = select(balances.c.account_id).where(
    balances.c.account_id.in_(bindparam("accounts", expanding=True)))
_claim_prices = (select(prices)
                 .where(or_(prices.c.account_id.is_(None),
                            prices.c.account_id.in_(bindparam("accounts", expanding=True))),
                        prices.c.channel.in_(bindparam("channels", expanding=True)),
                        prices.c.country_code.in_(bindparam("countries", expanding=True)))
                 .order_by(prices.c.id))
_charged = (select(attempts.c.id, attempts.c.account_id, attempts.c.state,
                   attempts.c.lease_owner, attempts.c.part_price_micros, attempts.c.charged_parts)
            .where(attempts.c.id.in_(bindparam("ids", expanding=True)),
                   attempts.c.charged_parts.is_not(None))
            .order_by(attempts.c.id))


@dataclass(frozen=True, slots=True)
class ChargeItem:
    message_id: str
    account_id: int
    channel: str
    to: str
    content: dict[str, Any]
    charged: bool  # charged by an earlier claim whose lease ran out


@dataclass(frozen=True, slots=True)
class Settlement:
    message_id: str
    owner: str  # only the lease holder's outcome settles
    parts: int | None  # the parts the upstream took; None: refund (retry, or refused at submit)


def _row(r: Any) -> PriceRow:
    return PriceRow(r.channel, r.country_code, r.country, r.mccmnc, r.network, r.price_micros)


def _select_rows(account_ids: Sequence[int], channels: Iterable[str] | None = None,
                 countries: Iterable[str] | None = None) -> Any:
    query = select(prices).where(or_(prices.c.account_id.is_(None),
                                     prices.c.account_id.in_(list(account_ids))))
    if channels is not None:
        query = query.where(prices.c.channel.in_(sorted(set(channels))))
    if countries is not None:
        query = query.where(prices.c.country_code.in_(sorted(set(countries))))
    return query.order_by(prices.c.id)


def charge(conn: Connection, items: Sequence[ChargeItem], now: datetime) -> set[str]:
    """Charge the claimed attempts not charged yet; returns the ids the balance did not cover."""
    todo = sorted((i for i in items if not i.charged), key=lambda i: i.message_id)
    if not todo:
        return set()
    account_ids = sorted({i.account_id for i in todo})
    country = {i.message_id: country_of(i.to) for i in todo}
    countries = sorted({c for c in country.values() if c})
    # no country, no price: a batch of chat ids or short codes asks for none
    found = [(r.account_id, _row(r)) for r in conn.execute(_claim_prices, {
        "accounts": account_ids, "channels": sorted({i.channel for i in todo}),
        "countries": countries})] if countries else []
    lists = {account_id: effective((row for owner, row in found if owner == account_id),
                                   (row for owner, row in found if owner is None))
             for account_id in account_ids}
    costs: list[tuple[ChargeItem, str, int, int]] = []
    for item in todo:
        code = country[item.message_id]
        price = part_price(r for r in lists[item.account_id]
                           if r.channel == item.channel and r.country_code == code)
        costs.append((item, code, price, parts_of(item.channel, item.content)))
    # only a cost can meet a balance: a batch that pays nothing asks for none
    limited = set(conn.execute(_limited, {"accounts": account_ids}).scalars()) if any(
        price * parts for _, _, price, parts in costs) else set()
    refused: set[str] = set()
    charges: list[dict[str, Any]] = []
    for item, code, price, parts in costs:
        cost = price * parts
        if cost and item.account_id in limited and conn.execute(
                _debit, {"a": item.account_id, "cost": cost, "now": now}).rowcount != 1:
            refused.add(item.message_id)
            continue
        charges.append({"mid": item.message_id, "country": code, "price": price, "parts": parts})
    _record_charge.run(conn, charges)
    return refused


def country_prices(conn: Connection, account_id: int, channel: str,
                   countries: Iterable[str]) -> dict[str, int]:
    """What one unit of `channel` costs `account_id` in each of `countries` (0: no price)."""
    wanted = sorted({c for c in countries if c})
    found = [(r.account_id, _row(r)) for r in conn.execute(_select_rows(
        [account_id], [channel], wanted))] if wanted else []
    rows = effective((row for owner, row in found if owner == account_id),
                     (row for owner, row in found if owner is None))
    return {code: part_price(r for r in rows if r.country_code == code) for code in wanted}


def debit(conn: Connection, account_id: int, cost: int, now: datetime) -> bool:
    """Take `cost` off a prepaid balance if it covers it (an unlimited account always pays)."""
    if not cost or conn.execute(_has_balance, {"a": account_id}).first() is None:
        return True
    return conn.execute(_debit, {"a": account_id, "cost": cost, "now": now}).rowcount == 1


def refund(conn: Connection, account_id: int, cost: int, now: datetime) -> None:
    if cost:
        conn.execute(_credit, {"a": account_id, "cost": cost, "now": now})


def settle(conn: Connection, settlements: Sequence[Settlement], now: datetime) -> None:
    """Refund or adjust the charges of attempts whose upstream has answered (see the module)."""
    if not settlements:
        return
    by_id = {s.message_id: s for s in settlements}
    rows = conn.execute(_charged, {"ids": sorted(by_id)}).all()
    for mid, account_id, state, owner, price, charged in rows:
        wanted = by_id[mid]
        if state != "sending" or owner != wanted.owner:
            continue  # not this holder's any more: its new holder settles it
        if wanted.parts is None:
            refund(conn, account_id, price * charged, now)
            _record_charge.run(conn, [{"mid": mid, "country": None, "price": None,
                                       "parts": None}])
            continue
        delta = (wanted.parts - charged) * price
        if delta < 0:
            refund(conn, account_id, -delta, now)
        elif delta > 0 and not debit(conn, account_id, delta, now):
            # The message has left; the parts the balance could not cover stay unpaid.
            log.warning("attempt %s took %d parts, %d were charged, and the balance does not "
                        "cover the rest", mid, wanted.parts, charged)
            continue
        if wanted.parts != charged:
            conn.execute(_set_charged_parts, {"mid": mid, "parts": wanted.parts})


class Pricing:
    """The operator's and the legacy endpoints' view of price lists and balances."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def replace_prices(self, account_id: int | None, rows: Sequence[PriceRow],
                             channels: Iterable[str]) -> int:
        """The scope's (an account's, or the global) list of each of `channels` becomes `rows`."""
        replaced = sorted(set(channels) | {r.channel for r in rows})
        scope = (prices.c.account_id.is_(None) if account_id is None
                 else prices.c.account_id == account_id)

        def work(conn: Connection) -> int:
            conn.execute(delete(prices).where(scope, prices.c.channel.in_(replaced)))
            if rows:
                conn.execute(insert(prices), [
                    {"account_id": account_id, "channel": r.channel,
                     "country_code": r.country_code, "country": r.country, "mccmnc": r.mccmnc,
                     "network": r.network, "price_micros": r.price} for r in rows])
            return len(rows)

        return await self.db.write(work)

    async def price_list(self, account_id: int, channel: str | None = None,
                         country_code: str | None = None) -> list[PriceRow]:
        """The prices `account_id` pays: its own list over the global one."""
        def work(conn: Connection) -> list[PriceRow]:
            found = conn.execute(_select_rows(
                [account_id], None if channel is None else [channel],
                None if country_code is None else [country_code])).all()
            return effective((_row(r) for r in found if r.account_id == account_id),
                             (_row(r) for r in found if r.account_id is None))

        return await self.db.read(work)

    async def balance(self, account_id: int) -> int | None:
        """Micro-units left, or None: unlimited."""
        def work(conn: Connection) -> int | None:
            value = conn.execute(select(balances.c.amount_micros)
                                 .where(balances.c.account_id == account_id)).scalar()
            return None if value is None else int(value)

        return await self.db.read(work)

    async def credit(self, account_id: int, amount: int, now: datetime) -> int | None:
        """Add `amount` (negative: take it off, never below zero) to the balance, which starts
        at zero when the account was unlimited; returns the new balance, None if it would go
        below zero (nothing changed)."""
        def work(conn: Connection) -> int | None:
            changed = conn.execute(
                update(balances).where(balances.c.account_id == account_id,
                                       balances.c.amount_micros + amount >= 0)
                .values(amount_micros=balances.c.amount_micros + amount, updated_at=now)
                .returning(balances.c.amount_micros)).scalar()
            if changed is not None:
                return int(changed)
            exists = conn.execute(select(balances.c.account_id)
                                  .where(balances.c.account_id == account_id)).first()
            if exists is not None or amount < 0:
                return None
            conn.execute(insert(balances).values(account_id=account_id, amount_micros=amount,
                                                 updated_at=now))
            return amount

        return await self.db.write(work)

    async def set_unlimited(self, account_id: int) -> None:
        def work(conn: Connection) -> None:
            conn.execute(delete(balances).where(balances.c.account_id == account_id))

        await self.db.write(work)


__all__ = ["ChargeItem", "Pricing", "Settlement", "charge", "country_prices", "debit", "refund",
           "settle"]
