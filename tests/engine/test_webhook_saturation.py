"""A saturated receiver does not make the sender claim and put back its backlog: each report is
claimed once, while other receivers keep being served. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading

from omnirelay.engine.webhooks import PER_RECEIVER_LIMIT
from tests.engine.outbox import Receiver, eventually, outbox

BACKLOG = 200
OTHERS = 5


async def test_a_full_receivers_backlog_is_claimed_once_and_drained_at_its_pace(
        database_url: str) -> None:
    gate = threading.Event()
    slow, fast = Receiver(gate=gate).start(), Receiver().start()
    try:
        async with outbox(database_url) as box:
            await box.queue(*[f"{slow.url}/slow/{i}" for i in range(BACKLOG)])
            await box.queue(*[f"{fast.url}/fast/{i}" for i in range(OTHERS)])
            # While the slow receiver holds every request, the other one is served in full...
            await eventually(lambda: asyncio.sleep(0, fast.count()), lambda n: n == OTHERS)
            await eventually(lambda: asyncio.sleep(0, slow.open_now),
                             lambda n: n == PER_RECEIVER_LIMIT)
            # ...and the sender has claimed only what the slow one is taking plus one share
            # waiting for its slots: nothing was claimed just to be put back.
            assert box.sender.claimed == 2 * PER_RECEIVER_LIMIT + OTHERS
            assert box.sender.deferred == 0
            gate.set()
            rows = await box.settled(timeout=60)
            assert box.sender.claimed == BACKLOG + OTHERS  # every report claimed exactly once
            assert box.sender.deferred == 0
            assert box.sender.claims < BACKLOG  # a claim per share of the receiver, not per report
        assert {r["state"] for r in rows} == {"done"}
        assert {r["tries"] for r in rows} == {1}
        assert slow.count() == BACKLOG
    finally:
        slow.stop()
        fast.stop()


async def test_reports_waiting_for_a_slot_go_back_untried_when_the_sender_stops(
        database_url: str) -> None:
    gate = threading.Event()
    slow = Receiver(gate=gate).start()
    share = PER_RECEIVER_LIMIT
    try:
        async with outbox(database_url) as box:
            await box.queue(*[f"{slow.url}/slow/{i}" for i in range(3 * share)])
            await eventually(lambda: asyncio.sleep(0, box.sender.claimed),
                             lambda n: n == 2 * share)
            box.request_stop()
            # The share waiting for a slot goes back at once, untried and without its lease,
            # so that another worker may take it now rather than when the lease runs out...
            await eventually(box.rows, lambda rows: sum(
                r["tries"] == 0 and r["lease_until"] is None for r in rows) == 2 * share)
            gate.set()  # ...while the requests in flight finish
            await box.stopped()
            rows = await box.rows()
        assert [(r["state"], r["tries"]) for r in rows[:share]] == [("done", 1)] * share
        assert [(r["state"], r["tries"], r["lease_until"]) for r in rows[share:]] == [
            ("pending", 0, None)] * (2 * share)
        assert box.sender.deferred == share
    finally:
        slow.stop()
