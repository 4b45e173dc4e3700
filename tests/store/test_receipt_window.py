"""Parked receipts (issue 13, item 1): only a receipt that can belong to an attempt is applied to it,
the rest expire within the match window and are counted; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from omnirelay.core.delivery import SendResult, StatusReport
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.store.tables import attempts, unmatched_reports
from tests.store.test_store import accept, rows
from tests.support import create_account, make_settings
from tests.templates import premigrate


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    premigrate(database_url)
    rt = Runtime(make_settings(database_url, engine={"receipt_match_window": 60.0}))
    rt.migrate()
    yield rt
    rt.close()


async def park(runtime: Runtime, ref: str, status: str, at: Any) -> None:
    def work(conn: Any) -> None:
        conn.execute(unmatched_reports.insert().values(channel="sms", ref=ref, status=status,
                                                       created_at=at))

    await runtime.db.write(work)


def unmatched(runtime: Runtime, outcome: str) -> float | None:
    return runtime.metrics.registry.get_sample_value(
        "omnirelay_receipts_unmatched_total", {"channel": "sms", "outcome": outcome})


async def test_the_sweep_never_applies_a_receipt_parked_before_the_submit(runtime: Runtime) -> None:
    """Another process parked it before this attempt was even submitted: it was some earlier
    message's, whatever its id. Before, the sweep applied it."""
    account = await create_account(runtime)
    await accept(runtime, account, 1)
    mid = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    submitted = utcnow()
    await park(runtime, "5a", "UNDELIV", submitted - timedelta(seconds=5))
    await runtime.store.record_send_outcomes("w", [SendResult(mid, provider_refs=("5b",))],
                                             {mid: "sms"}, utcnow(), submitted_at=submitted)
    # the race: the ref is written by one process, the receipt parked by another
    await park(runtime, "5b", "UNDELIV", submitted - timedelta(seconds=5))
    await runtime.store.rematch_unmatched(utcnow())
    assert await rows(runtime, attempts.c.state, attempts.c.status) == [("sent", None)]
    assert await rows(runtime, unmatched_reports.c.ref) == [("5a",)], "dropped, not kept"
    assert unmatched(runtime, "dropped") == 1
    # one parked after the submit began is the attempt's
    await park(runtime, "5b", "DELIVRD", submitted + timedelta(seconds=1))
    await runtime.store.rematch_unmatched(utcnow())
    assert await rows(runtime, attempts.c.state, attempts.c.status) == [("done", "DELIVRD")]


async def test_parked_receipts_expire_after_the_window_and_are_counted(runtime: Runtime) -> None:
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", provider_ref=f"ff{i}")
                                       for i in range(3)], utcnow())
    assert unmatched(runtime, "parked") == 3
    await runtime.store.rematch_unmatched(utcnow() + timedelta(seconds=30))
    assert len(await rows(runtime, unmatched_reports.c.ref)) == 3, "still within the window"
    await runtime.store.rematch_unmatched(utcnow() + timedelta(seconds=61))
    assert await rows(runtime, unmatched_reports.c.ref) == []
    assert unmatched(runtime, "expired") == 3


async def test_a_receipt_parked_long_after_the_submit_began_is_not_matched(
        runtime: Runtime) -> None:
    account = await create_account(runtime)
    await accept(runtime, account, 1)
    mid = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    submitted = utcnow() - timedelta(seconds=120)  # a window of 60 s
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", provider_ref="7c")], utcnow())
    await runtime.store.record_send_outcomes("w", [SendResult(mid, provider_refs=("7c",))],
                                             {mid: "sms"}, utcnow(), submitted_at=submitted)
    assert await rows(runtime, attempts.c.state, attempts.c.status) == [("sent", None)]
    assert unmatched(runtime, "dropped") == 1
