"""The history listings read an index range in order, never the whole table, on both databases.

benchmarks/bench_history.py shows the same plans at a million rows, with timings. Here the tables
are nearly empty, so PostgreSQL is told to avoid sequential scans where it can: the test proves
the index serves the query (range and order), which is what keeps a page cheap at any size."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Select, text

from omnirelay.core.history import InboundFilter, MessageFilter, Position
from omnirelay.store import migrate
from omnirelay.store.database import Database
from omnirelay.store.history import inbound_statement, search_statement

DAY = datetime(2026, 12, 1)
AFTER = Position(DAY, "7b0e3c56-8d37-4a51-9b9e-5d1f0c2a1e11")

CASES = [
    ("newest", search_statement(1, MessageFilter()), "ix_omnimessages_account_created"),
    ("after a cursor", search_statement(1, MessageFilter(after=AFTER)),
     "ix_omnimessages_account_created"),
    ("a window", search_statement(1, MessageFilter(since=DAY, until=DAY.replace(day=2))),
     "ix_omnimessages_account_created"),
    ("a recipient", search_statement(1, MessageFilter(to="+37255512345", after=AFTER)),
     "ix_omnimessages_account_to"),
    ("a channel and status", search_statement(1, MessageFilter(channel="sms", status="DELIVRD")),
     "ix_omnimessages_account_created"),
    ("inbound", inbound_statement(1, InboundFilter(after=AFTER)),
     "ix_inbound_messages_account_received"),
]


def explain(db: Database, statement: Select) -> str:  # type: ignore[type-arg]
    with db.engine.connect() as conn:
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        if db.engine.dialect.name == "sqlite":
            return "\n".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
        conn.execute(text("SET enable_seqscan = off"))
        return "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))


@pytest.mark.parametrize(("case", "statement", "index"), CASES, ids=[c[0] for c in CASES])
def test_a_page_is_an_index_range_in_order(database_url: str, case: str, statement: Select,  # type: ignore[type-arg]
                                           index: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        plan = explain(db, statement)
    finally:
        db.dispose()
    assert index in plan, plan
    table = "inbound_messages" if case == "inbound" else "omnimessages"
    if db.engine.dialect.name == "sqlite":
        assert f"SEARCH {table} USING INDEX {index}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the order
    else:
        assert f"Seq Scan on {table}" not in plan, plan
        assert "Sort" not in plan.split("SubPlan")[0], plan
