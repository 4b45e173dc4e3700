"""Charging number lookups, on SQLite and PostgreSQL: concurrent requests from several processes'
worth of runtimes never overdraw one balance, a give-back undoes only its own request, and the
statistics read lookups from one index range of the account's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import Connection, func, select, text

from omnirelay.core.pricing import parse_csv
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.store.number_lookup import charge_lookups, give_back
from omnirelay.store.pricing import Pricing
from omnirelay.store.statistics import country_totals, lookup_statement
from omnirelay.store.tables import number_lookups
from tests.support import create_account, make_settings

EE, FI = "+37255512345", "+358401234567"
PRICES = "Country,Code,MCCMNC,Network,Price\nEstonia,EE,,,0.01\n"


@pytest.fixture
async def runtimes(database_url: str) -> AsyncIterator[list[Runtime]]:
    settings = make_settings(database_url)
    started = [Runtime(settings) for _ in range(3)]
    started[0].migrate()
    yield started
    for runtime in started:
        runtime.close()


def rows(runtime: Runtime) -> list[tuple[int, str]]:
    def work(conn: Connection) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in conn.execute(
            select(number_lookups.c.account_id, number_lookups.c.request_id)
            .order_by(number_lookups.c.id))]

    return runtime.db.run_sync(work)


async def test_concurrent_lookups_charge_one_balance_exactly(runtimes: list[Runtime]) -> None:
    first = runtimes[0]
    account = await create_account(first)
    pricing = Pricing(first.store.db)
    await pricing.replace_prices(None, parse_csv(PRICES, "hlr"), ["hlr"])
    await pricing.credit(account.id, 50_000, utcnow())  # five lookups' worth

    charges = await asyncio.gather(*(
        charge_lookups(runtimes[n % 3].store.db, account.id, f"r{n}", [(EE, "EE")], utcnow())
        for n in range(12)))

    assert sum(c.covered for c in charges) == 5
    assert all(c.prices == [10_000] for c in charges)
    assert await pricing.balance(account.id) == 0
    assert sorted(r for _a, r in rows(first)) == sorted(
        f"r{n}" for n, c in enumerate(charges) if c.covered)


async def test_give_back_undoes_only_its_own_request(runtimes: list[Runtime]) -> None:
    first = runtimes[0]
    account = await create_account(first)
    other = await create_account(first, "other")
    pricing = Pricing(first.store.db)
    await pricing.replace_prices(None, parse_csv(PRICES, "hlr"), ["hlr"])
    await pricing.credit(account.id, 100_000, utcnow())
    db = first.store.db
    assert (await charge_lookups(db, account.id, "kept", [(EE, "EE")], utcnow())).covered
    assert (await charge_lookups(db, account.id, "undone", [(EE, "EE"), (FI, "FI")],
                                 utcnow())).prices == [10_000, 0]
    assert (await charge_lookups(db, other.id, "undone", [(EE, "EE")], utcnow())).covered
    assert await pricing.balance(account.id) == 80_000
    await give_back(db, account.id, "undone", utcnow())
    assert await pricing.balance(account.id) == 90_000
    assert rows(first) == [(account.id, "kept"), (other.id, "undone")]
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = datetime.fromordinal(day.toordinal() + 1)
    assert await country_totals(db, account.id, day, tomorrow, ["hlr"]) == [("EE", 1, 10_000)]
    assert await country_totals(db, other.id, day, tomorrow) == [("EE", 1, 10_000)]
    assert await country_totals(db, account.id, day, tomorrow, ["sms"]) == []


def test_the_lookup_report_is_an_index_range(runtimes: list[Runtime]) -> None:
    db = runtimes[0].db
    statement = lookup_statement(7, datetime(2026, 11, 1), datetime(2026, 12, 1))
    with db.engine.connect() as conn:
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        if db.is_sqlite:
            plan = "\n".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
            assert "SEARCH number_lookups USING INDEX ix_number_lookups_account_time " \
                   "(account_id=? AND created_at>? AND created_at<?)" in plan, plan
        else:
            conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
            assert "ix_number_lookups_account_time" in plan and "Seq Scan" not in plan, plan
        assert conn.execute(select(func.count()).select_from(number_lookups)).scalar() == 0
