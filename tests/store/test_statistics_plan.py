"""The statistics report reads one index range of an account's submitted attempts, never the whole
table, on both databases (the model is test_history_plans.py): PostgreSQL is told to avoid
sequential scans where it can, so the plan shows the index serving the range."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from omnirelay.store import migrate
from omnirelay.store.database import Database
from omnirelay.store.statistics import report_statement

INDEX = "ix_attempts_account_sent"


def explain(db: Database, channels: list[str] | None) -> str:
    statement = report_statement(7, datetime(2026, 11, 1), datetime(2026, 12, 1), channels)
    with db.engine.connect() as conn:
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        if db.engine.dialect.name == "sqlite":
            return "\n".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
        conn.execute(text("SET enable_seqscan = off"))
        return "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))


def test_the_report_is_an_index_range_of_the_accounts_sent_attempts(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        plans = [explain(db, None), explain(db, ["sms", "viber"])]
    finally:
        db.dispose()
    for plan in plans:
        assert INDEX in plan, plan
        if db.engine.dialect.name == "sqlite":
            assert f"SEARCH attempts USING INDEX {INDEX} (account_id=? AND sent_at>? AND " \
                   "sent_at<?)" in plan, plan
        else:
            assert "Seq Scan on attempts" not in plan, plan
            assert "Index Cond" in plan and "sent_at" in plan, plan
