"""[retention]: aged finished rows are purged in batches, newer and unfinished rows are kept, on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select

from omnirelay.core.timefmt import utcnow
from omnirelay.engine.maintenance import Maintenance
from omnirelay.runtime import Runtime
from omnirelay.store.retention import Retention
from omnirelay.store.tables import (
    attempts,
    inbound_messages,
    omnimessages,
    provider_refs,
    status_events,
    webhooks,
)
from tests.support import create_account, make_settings
from tests.templates import premigrate

NOW = utcnow()
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)


def add_message(conn: Connection, account_id: int, at: datetime, state: str) -> str:
    om = str(uuid.uuid4())
    conn.execute(insert(omnimessages).values(
        id=om, account_id=account_id, surface="messente", to="+37255512345", state=state,
        priority=1, text_store="plaintext", variants=1, created_at=at, updated_at=at))
    attempt = str(uuid.uuid4())
    conn.execute(insert(attempts).values(
        id=attempt, omnimessage_id=om, account_id=account_id, seq=0, channel="sms", sender="S",
        to="+37255512345", validity_seconds=60, state="done" if state == "done" else "due",
        priority=1, updated_at=at))
    conn.execute(insert(status_events).values(attempt_id=attempt, status="DELIVRD",
                                              source="receipt", created_at=at))
    conn.execute(insert(provider_refs).values(channel="sms", ref=attempt, attempt_id=attempt,
                                              part=0))
    return om


def add_inbound(conn: Connection, account_id: int | None, at: datetime) -> str:
    ident = str(uuid.uuid4())
    conn.execute(insert(inbound_messages).values(
        id=ident, account_id=account_id, channel="sms", sender="+37255512345",
        recipient="+37255500001", text="hi", received_at=at))
    return ident


def add_webhook(conn: Connection, account_id: int, at: datetime, state: str) -> int:
    return int(conn.execute(insert(webhooks).values(
        account_id=account_id, order_key="k", kind="dlr", url="http://127.0.0.1:1/", body=b"{}",
        state=state, next_try_at=at, created_at=at,
        done_at=at if state == "done" else None)).inserted_primary_key[0])


def remaining(runtime: Runtime, table: Any) -> set[Any]:
    return set(runtime.db.run_sync(lambda conn: conn.execute(select(table.c.id)).scalars().all()))


def test_aged_finished_rows_go_in_batches_and_the_rest_stays(database_url: str) -> None:
    settings = make_settings(database_url, retention={
        "omnimessages_days": 30, "inbound_days": 30, "webhooks_days": 7, "batch_size": 2})
    premigrate(database_url)
    runtime = Runtime(settings)
    runtime.migrate()
    try:
        first = asyncio.run(create_account(runtime, "first"))
        second = asyncio.run(create_account(runtime, "second"))

        def fill(conn: Connection) -> dict[str, Any]:
            return {
                "old_done": [add_message(conn, a.id, OLD, s) for a in (first, second)
                             for s in ("done", "done", "canceled")],
                "old_busy": [add_message(conn, first.id, OLD, "accepted")],
                "recent": [add_message(conn, second.id, RECENT, "done")],
                "old_inbound": [add_inbound(conn, owner, OLD)
                                for owner in (first.id, second.id, None)],
                "recent_inbound": [add_inbound(conn, first.id, RECENT)],
                "old_hooks": [add_webhook(conn, first.id, NOW - timedelta(days=8), s)
                              for s in ("done", "dead", "done")],
                "kept_hooks": [add_webhook(conn, first.id, NOW - timedelta(days=8), "pending"),
                               add_webhook(conn, second.id, RECENT, "done")],
            }

        rows = runtime.db.run_sync(fill)
        # 6 aged messages with batches of 2 take three batches, all in one pass.
        maintenance = Maintenance(runtime.store, runtime.sink, settings.engine, "w",
                                  runtime.wakeup, Retention(runtime.db, settings.retention),
                                  runtime.metrics)
        asyncio.run(maintenance.housekeeping_pass())

        assert remaining(runtime, omnimessages) == set(rows["old_busy"] + rows["recent"])
        assert remaining(runtime, inbound_messages) == set(rows["recent_inbound"])
        assert remaining(runtime, webhooks) == set(rows["kept_hooks"])
        left_attempts = runtime.db.run_sync(lambda conn: conn.execute(
            select(func.count()).select_from(attempts)).scalar_one())
        left_events = runtime.db.run_sync(lambda conn: conn.execute(
            select(func.count()).select_from(status_events)).scalar_one())
        left_refs = runtime.db.run_sync(lambda conn: conn.execute(
            select(func.count()).select_from(provider_refs)).scalar_one())
        assert (left_attempts, left_events, left_refs) == (2, 2, 2)
        purged = {kind: runtime.metrics.registry.get_sample_value(
            "omnirelay_retention_purged_total", {"kind": kind})
            for kind in ("omnimessages", "inbound", "webhooks")}
        assert purged == {"omnimessages": 6.0, "inbound": 3.0, "webhooks": 3.0}
    finally:
        runtime.close()


def test_zero_days_keeps_everything(database_url: str) -> None:
    settings = make_settings(database_url, retention={
        "omnimessages_days": 0, "inbound_days": 0, "webhooks_days": 0})
    premigrate(database_url)
    runtime = Runtime(settings)
    runtime.migrate()
    try:
        account = asyncio.run(create_account(runtime))
        kept = runtime.db.run_sync(lambda conn: (
            add_message(conn, account.id, OLD - timedelta(days=3650), "done"),
            add_inbound(conn, None, OLD), add_webhook(conn, account.id, OLD, "dead")))
        purged = asyncio.run(Retention(runtime.db, settings.retention).purge(NOW))
        assert (purged.omnimessages, purged.inbound, purged.webhooks) == (0, 0, 0)
        assert remaining(runtime, omnimessages) == {kept[0]}
        assert remaining(runtime, inbound_messages) == {kept[1]}
        assert remaining(runtime, webhooks) == {kept[2]}
    finally:
        runtime.close()
