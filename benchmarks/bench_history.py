"""History at size: one page of GET /v1/omnimessages over a million messages, and its query plan.

Fills a fresh database with `--n` omnimessages (one SMS or a Viber → SMS chain each, spread over
two accounts and 30 days, a few thousand recipients) by bulk insert, then times the store's search
for pages a client would ask for and prints each query's plan (SQLite's EXPLAIN QUERY PLAN,
PostgreSQL's EXPLAIN ANALYZE), so it shows that a page is an index range scan, not a table scan.

    python benchmarks/bench_history.py                              # SQLite, 1,000,000 messages
    python benchmarks/bench_history.py --database postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/bench_history.py --n 100000 --rounds 20

On PostgreSQL it works in a schema of its own and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import insert, text

from omnirelay.core.history import MessageFilter, Position
from omnirelay.store import migrate
from omnirelay.store.database import Database
from omnirelay.store.history import History, search_statement
from omnirelay.store.tables import accounts, attempts, omnimessages

CHUNK = 20_000
STATUSES = ["DELIVRD"] * 90 + ["UNDELIV"] * 6 + ["FAILED"] * 3 + ["EXPIRED"]


def fill(db: Database, n: int, seed: int = 7) -> tuple[datetime, str]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 1)
    with db.engine.begin() as conn:
        for account_id in (1, 2):
            conn.execute(insert(accounts).values(
                id=account_id, name=f"a{account_id}", api_username=f"u{account_id}",
                api_password_enc="x", twilio_account_sid=f"AC{account_id}",
                twilio_auth_token_enc="x", inbound_secret_enc="x", default_sender="S",
                created_at=start))
    recipients = [f"+3725{rng.randrange(1000000, 9999999)}" for _ in range(5000)]
    probe = recipients[0]
    made = 0
    while made < n:
        count = min(CHUNK, n - made)
        messages: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for i in range(count):
            at = start + timedelta(seconds=(made + i) * 2_592_000 / n)
            om = str(uuid.UUID(int=rng.getrandbits(128)))
            chain = rng.random() < 0.3
            to = rng.choice(recipients)
            messages.append({"id": om, "account_id": 1 + (made + i) % 2, "surface": "messente",
                             "to": to, "state": "done", "priority": 1, "time_to_send": None,
                             "dlr_url": None, "text_store": "nostore", "variants": 2 if chain else 1,
                             "extra": None, "created_at": at, "updated_at": at})
            channels = ["viber", "sms"] if chain else ["sms"]
            for seq, channel in enumerate(channels):
                status = "UNDELIV" if chain and seq == 0 else rng.choice(STATUSES)
                rows.append({"id": str(uuid.UUID(int=rng.getrandbits(128))), "omnimessage_id": om,
                             "account_id": messages[-1]["account_id"], "seq": seq,
                             "channel": channel, "sender": "S", "to": to, "content": None,
                             "content_sha256": None, "validity_seconds": 3600, "state": "done",
                             "priority": 1, "status": status, "err": 0, "updated_at": at})
        _bulk(db, omnimessages.name, messages)
        _bulk(db, attempts.name, rows)
        made += count
        print(f"\r  filled {made:,} / {n:,}", end="", flush=True)
    print()
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return start, probe


def _bulk(db: Database, table: str, rows: list[dict[str, Any]]) -> None:
    """Driver-level bulk insert (COPY on PostgreSQL): SQLAlchemy's per-row processing would make
    the fill take most of an hour at a million rows."""
    columns = list(rows[0])
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        if db.engine.dialect.name == "sqlite":
            def value(v: Any) -> Any:
                return v.isoformat(" ", "microseconds") if isinstance(v, datetime) else v
            marks = ", ".join("?" for _ in columns)
            names = ", ".join(f'"{c}"' for c in columns)
            # The connections autocommit (see store/database.py): one transaction per chunk.
            raw.execute("BEGIN")
            raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                            [tuple(value(r[c]) for c in columns) for r in rows])
            raw.execute("COMMIT")
        else:
            names = ", ".join(f'"{c}"' for c in columns)
            with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row([r[c] for c in columns])


def plan(db: Database, query: MessageFilter) -> str:
    statement = search_statement(1, query)
    with db.engine.connect() as conn:
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        if db.engine.dialect.name == "sqlite":
            lines = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
            return "\n".join("    " + str(r[-1]) for r in lines)
        lines = conn.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {compiled}")).all()
        return "\n".join("    " + r[0] for r in lines)


async def timed(history: History, query: MessageFilter, rounds: int) -> tuple[float, int]:
    samples = []
    found = 0
    for _ in range(rounds):
        began = time.perf_counter()
        page = await history.search(1, query)
        samples.append((time.perf_counter() - began) * 1000)
        found = len(page.items)
    return statistics.median(samples), found


async def run(db: Database, start: datetime, probe: str, rounds: int) -> None:
    history = History(db)
    middle = start + timedelta(days=15)
    first = await history.search(1, MessageFilter(limit=50))
    deep = first.items[-1]
    cases = {
        "newest 50": MessageFilter(limit=50),
        "newest 500": MessageFilter(limit=500),
        "page after a cursor mid-way": MessageFilter(
            limit=50, after=Position(middle, "ffffffff-ffff-ffff-ffff-ffffffffffff")),
        "one recipient": MessageFilter(to=probe, limit=50),
        "channel=viber": MessageFilter(channel="viber", limit=50),
        "status=FAILED": MessageFilter(status="FAILED", limit=50),
        "one day": MessageFilter(since=middle, until=middle + timedelta(days=1), limit=50),
        "second page": MessageFilter(limit=50, after=Position(deep.created_at, deep.id)),
    }
    for name, query in cases.items():
        median, found = await timed(history, query, rounds)
        print(f"{name:30} {median:8.2f} ms median of {rounds}  ({found} rows)")
        print(plan(db, query))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, help="a PostgreSQL URL; SQLite by default")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    schema = None
    if args.database:
        schema = "bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(args.database, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{args.database}{'&' if '?' in args.database else '?'}options=-csearch_path%3D{schema}"
        folder = None
    else:
        folder = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(folder.name) / 'history.db'}"
    db = Database(url)
    try:
        migrate.upgrade(db)
        began = time.perf_counter()
        start, probe = fill(db, args.n)
        print(f"{args.n:,} omnimessages on {db.engine.dialect.name} "
              f"(filled in {time.perf_counter() - began:.0f} s)")
        asyncio.run(run(db, start, probe, args.rounds))
    finally:
        db.dispose()
        if schema is not None:
            with psycopg.connect(args.database, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        if folder is not None:
            folder.cleanup()


if __name__ == "__main__":
    main()
