"""The claim shares the queue fairly across accounts and holds each account to its send rate, on
SQLite and PostgreSQL: one account's bulk campaign queued ahead does not make another's few
messages wait for all of it (as far as the claim looks ahead: FAIR_WINDOW batches); priorities
still come first; an account's attempts beyond its send rate are put back, due at their turn,
uncharged and not counted as a try; on PostgreSQL two processes' claims spend one budget. Times
are given to the claims, never slept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import select

from omnirelay import account_admin as ops
from omnirelay.channels.base import OutboundMessage, SendResult
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.store.tables import attempts
from tests.store.test_store import accept
from tests.support import create_account, make_settings


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(database_url))
    rt.migrate()
    yield rt
    rt.close()


async def accounts(runtime: Runtime) -> tuple[Any, Any]:
    return await create_account(runtime, "bulk"), await create_account(runtime, "few")


async def test_a_small_account_behind_a_bulk_campaign_is_claimed_in_the_first_batch(
        runtime: Runtime) -> None:
    bulk, few = await accounts(runtime)
    await accept(runtime, bulk, 500)
    await accept(runtime, few, 10)
    now = utcnow() + timedelta(seconds=1)
    # the claim looks FAIR_WINDOW batches ahead: a batch of 150 sees all 510
    first = await runtime.store.claim_due_attempts("w", 150, 30, now)
    owners = [c.account_id for c in first]
    assert owners.count(few.id) == 10 and owners.count(bulk.id) == 140
    # handed out round-robin: each account's first, then each one's second, ...
    assert owners[:20] == [bulk.id, few.id] * 10
    rest: list[Any] = []
    while claimed := await runtime.store.claim_due_attempts("w", 50, 30, now):
        rest += claimed
    ids = [c.message_id for c in first + rest]
    assert len(ids) == len(set(ids)) == 510
    # within one account, oldest first as before
    assert [c.due_at for c in first + rest if c.account_id == bulk.id] == sorted(
        c.due_at for c in first + rest if c.account_id == bulk.id)


async def test_priority_still_comes_before_fairness(runtime: Runtime) -> None:
    bulk, few = await accounts(runtime)
    await accept(runtime, few, 5, priority="low")
    await accept(runtime, bulk, 30)
    urgent = await accept(runtime, bulk, 3, priority="high")
    claimed = await runtime.store.claim_due_attempts("w", 10, 30, utcnow() + timedelta(seconds=1))
    assert {c.message_id for c in claimed[:3]} == {m.attempts[0].message_id for m in urgent}
    assert [c.account_id for c in claimed[3:]] == [bulk.id] * 7  # regular before low


async def test_the_dispatcher_sends_the_small_account_early(database_url: str) -> None:
    runtime = Runtime(make_settings(database_url, engine={"batch_size": 150}))
    runtime.migrate()
    try:
        bulk, few = await accounts(runtime)
        await accept(runtime, bulk, 500)
        await accept(runtime, few, 10)
        sent: list[int] = []
        everything = asyncio.Event()
        provider = runtime.channels["sms"]
        original = provider.send

        async def send(batch: Sequence[OutboundMessage]) -> list[SendResult]:
            sent.extend(m.account_id for m in batch)
            if len(sent) >= 510:
                everything.set()
            return await original(batch)

        provider.send = send  # type: ignore[method-assign]
        await runtime.start()
        await asyncio.wait_for(everything.wait(), 60)
        await runtime.stop()
        positions = [i for i, account_id in enumerate(sent) if account_id == few.id]
        assert len(positions) == 10
        assert max(positions) < 150, positions  # in the first batch, not after the campaign
    finally:
        runtime.close()


async def set_send_rate(runtime: Runtime, name: str, rate: int) -> None:
    await ops.change_account(runtime, name, ops.AccountChanges(max_send_rps=rate))


async def due_rows(runtime: Runtime, account_id: int) -> list[tuple[Any, ...]]:
    def work(conn: Any) -> list[tuple[Any, ...]]:
        a = attempts.c
        return [tuple(r) for r in conn.execute(
            select(a.state, a.due_at, a.tries, a.charged_parts)
            .where(a.account_id == account_id).order_by(a.due_at))]
    return await runtime.db.read(work)


async def test_the_send_rate_holds_the_excess_back_to_its_turn(runtime: Runtime) -> None:
    bulk, few = await accounts(runtime)
    await set_send_rate(runtime, "bulk", 5)
    await accept(runtime, bulk, 20)
    await accept(runtime, few, 3)
    now = utcnow() + timedelta(seconds=1)
    claimed = await runtime.store.claim_due_attempts("w", 100, 30, now)
    owners = [c.account_id for c in claimed]
    assert owners.count(bulk.id) == 5 and owners.count(few.id) == 3
    held = [r for r in await due_rows(runtime, bulk.id) if r[0] == "due"]
    assert len(held) == 15
    assert all(r[1] > now and r[2] == 0 and r[3] is None for r in held)  # later, no try, unpaid
    assert [r[1] for r in held] == sorted(r[1] for r in held)
    assert held[-1][1] <= now + timedelta(seconds=3)  # 15 more at 5/s: within 3 s
    assert await runtime.store.claim_due_attempts("w", 100, 30, now) == []
    # a second later the budget and five turns have come
    later = await runtime.store.claim_due_attempts("w", 100, 30, now + timedelta(seconds=1))
    assert len(later) == 5
    # unlimited again: the rest goes at once when due
    await ops.change_account(runtime, "bulk", ops.AccountChanges(max_send_rps="unlimited"))
    rest = await runtime.store.claim_due_attempts("w", 100, 30, now + timedelta(seconds=10))
    assert len(rest) == 10


@pytest.mark.postgres
async def test_two_processes_spend_one_send_budget(postgres_url: str) -> None:
    first, second = (Runtime(make_settings(postgres_url)) for _ in range(2))
    first.migrate()
    try:
        bulk = await create_account(first, "bulk")
        await set_send_rate(first, "bulk", 4)
        await accept(first, bulk, 40)
        now = utcnow() + timedelta(seconds=1)
        got = await asyncio.gather(*(rt.store.claim_due_attempts(owner, 5, 30, now)
                                     for rt in (first, second) for owner in ("a", "b")))
        claimed = [c.message_id for batch in got for c in batch]
        assert len(claimed) == len(set(claimed)) == 4
    finally:
        first.close()
        second.close()


async def test_attempts_held_back_by_later_claims_queue_behind_the_earlier_ones(
        runtime: Runtime) -> None:
    bulk, _few = await accounts(runtime)
    await set_send_rate(runtime, "bulk", 5)
    await accept(runtime, bulk, 30)
    now = utcnow() + timedelta(seconds=1)
    assert len(await runtime.store.claim_due_attempts("w", 10, 30, now)) == 5
    assert await runtime.store.claim_due_attempts("w", 10, 30, now) == []
    assert await runtime.store.claim_due_attempts("w", 10, 30, now) == []
    turns = [r[1] for r in await due_rows(runtime, bulk.id) if r[0] == "due"]
    # 25 held back by three claims: each on a turn of its own, a fifth of a second apart
    assert len(turns) == 25 and len(set(turns)) == 25
    gaps = {round((b - a).total_seconds(), 3) for a, b in pairwise(turns)}
    assert gaps == {0.2}
    # each turn, one goes
    assert len(await runtime.store.claim_due_attempts("w", 10, 30, turns[0])) == 1
    assert len(await runtime.store.claim_due_attempts("w", 10, 30, turns[1])) == 1
