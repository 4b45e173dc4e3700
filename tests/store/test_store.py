"""The store's guarantees, on SQLite and PostgreSQL: what the engine's correctness rests on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from omnirelay.core.accept import messente_omnimessage
from omnirelay.core.delivery import SendResult, StatusReport
from omnirelay.core.omnimessage import parse_omnimessage
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.store.queries import WebhookResult
from omnirelay.store.tables import attempts, webhooks
from tests.support import create_account, make_settings
from tests.templates import premigrate

TO = "+37255512345"


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    premigrate(database_url)
    rt = Runtime(make_settings(database_url))
    rt.migrate()
    yield rt
    rt.close()


async def accept(runtime: Runtime, account: Any, count: int, **fields: Any) -> list[Any]:
    messages = [messente_omnimessage(account, parse_omnimessage(
        {"to": TO, "messages": [{"channel": "sms", "text": f"m{i}"}], **fields}),
        runtime.settings.engine)
        for i in range(count)]
    await runtime.accept(messages)
    return messages


async def rows(runtime: Runtime, *columns: Any) -> list[tuple[Any, ...]]:
    def work(conn: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(columns[0]))]

    return await runtime.db.read(work)


async def test_cancel_and_claim_never_both_win(runtime: Runtime) -> None:
    account = await create_account(runtime)
    messages = await accept(runtime, account, 200)
    owners = [f"w{i}" for i in range(4)]

    async def claimer(owner: str) -> list[str]:
        got: list[str] = []
        for _ in range(20):
            got += [c.message_id for c in await runtime.store.claim_due_attempts(
                owner, 7, 30, utcnow())]
        return got

    async def canceller() -> list[str]:
        won: list[str] = []
        for message in random.sample(messages, len(messages)):
            if await runtime.store.cancel(account.id, message.id, utcnow()):
                won.append(message.attempts[0].message_id)
        return won

    results = await asyncio.gather(canceller(), *(claimer(o) for o in owners))
    canceled = set(results[0])
    claimed = [mid for got in results[1:] for mid in got]
    assert len(claimed) == len(set(claimed)), "an attempt was claimed twice"
    assert not canceled & set(claimed), "an attempt was both canceled and claimed"
    states = dict((a, s) for a, s in await rows(runtime, attempts.c.id, attempts.c.state))
    assert {states[m] for m in canceled} <= {"canceled"}
    assert {states[m] for m in claimed} <= {"sending"}


async def test_concurrent_report_batches_in_any_order_all_apply(runtime: Runtime) -> None:
    account = await create_account(runtime)
    await accept(runtime, account, 300)
    claimed = await runtime.store.claim_due_attempts("w", 300, 30, utcnow())
    await runtime.store.record_send_outcomes(
        "w", [SendResult(c.message_id) for c in claimed],
        {c.message_id: "sms" for c in claimed}, utcnow())
    ids = [c.message_id for c in claimed]

    async def reporter(status: str) -> None:
        order = random.sample(ids, len(ids))
        for start in range(0, len(order), 50):
            await runtime.store.apply_reports(
                [StatusReport("sms", status, message_id=m) for m in order[start:start + 50]], utcnow())

    await asyncio.gather(reporter("ACCEPTD"), reporter("DELIVRD"), reporter("ACK"))
    final = {s for _, s in await rows(runtime, attempts.c.id, attempts.c.status)}
    assert final == {"DELIVRD"}


async def test_a_receipt_that_overtakes_its_submit_response_is_matched(runtime: Runtime) -> None:
    account = await create_account(runtime)
    await accept(runtime, account, 1)
    claimed = await runtime.store.claim_due_attempts("w", 10, 30, utcnow())
    mid = claimed[0].message_id
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", provider_ref="0A1B")], utcnow())
    assert (await rows(runtime, attempts.c.state))[0][0] == "sending"
    await runtime.store.record_send_outcomes("w", [SendResult(mid, provider_refs=("0A1B",))],
                                             {mid: "sms"}, utcnow())
    assert await rows(runtime, attempts.c.state, attempts.c.status) == [("done", "DELIVRD")]


async def test_a_parked_receipt_is_matched_by_the_sweep(runtime: Runtime) -> None:
    """The receipt and the ref were stored by different processes in the race window."""
    account = await create_account(runtime)
    await accept(runtime, account, 1)
    mid = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    await runtime.store.record_send_outcomes("w", [SendResult(mid, provider_refs=("77",))],
                                             {mid: "sms"}, utcnow())
    from omnirelay.store.tables import unmatched_reports

    def park(conn: Any) -> None:
        conn.execute(unmatched_reports.insert().values(channel="sms", ref="77", status="DELIVRD",
                                                       created_at=utcnow()))

    await runtime.db.write(park)
    assert await runtime.store.rematch_unmatched(utcnow(), utcnow() - timedelta(days=1)) == 1
    assert await rows(runtime, attempts.c.status) == [("DELIVRD",)]


@pytest.mark.parametrize(("part_statuses", "expected"), [
    (["DELIVRD", "DELIVRD", "DELIVRD"], "DELIVRD"),
    (["DELIVRD", "UNDELIV"], "UNDELIV"),
    (["DELIVRD"], None),  # two of three parts unknown: no outcome yet
])
async def test_multipart_status_is_the_combination_of_its_parts(
        runtime: Runtime, part_statuses: list[str], expected: str | None) -> None:
    account = await create_account(runtime)
    await accept(runtime, account, 1)
    mid = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    await runtime.store.record_send_outcomes(
        "w", [SendResult(mid, provider_refs=("p1", "p2", "p3"), parts_count=3)],
        {mid: "sms"}, utcnow())
    for ref, status in zip(("p1", "p2", "p3"), part_statuses, strict=False):
        await runtime.store.apply_reports([StatusReport("sms", status, provider_ref=ref)], utcnow())
    assert await rows(runtime, attempts.c.status) == [(expected,)]


async def test_reports_of_one_message_are_claimed_one_at_a_time(runtime: Runtime) -> None:
    account = await create_account(runtime, dlr_url="http://127.0.0.1:9/dlr")
    await accept(runtime, account, 1)
    mid = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    await runtime.store.record_send_outcomes("w", [SendResult(mid)], {mid: "sms"}, utcnow())
    await runtime.store.apply_reports([StatusReport("sms", "ACCEPTD", message_id=mid)], utcnow())
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", message_id=mid)], utcnow())
    first = await runtime.store.claim_webhooks(10, 60, utcnow())
    assert len(first) == 1 and b"ACCEPTD" in first[0].body
    assert await runtime.store.claim_webhooks(10, 60, utcnow()) == []
    await runtime.store.finish_webhooks([WebhookResult(first[0].id, True)], utcnow())
    second = await runtime.store.claim_webhooks(10, 60, utcnow())
    assert len(second) == 1 and b"DELIVRD" in second[0].body
    await runtime.store.finish_webhooks([WebhookResult(second[0].id, False, 60, "HTTP 500")],
                                        utcnow())
    assert await rows(runtime, webhooks.c.state, webhooks.c.tries) == [("done", 1), ("pending", 1)]


async def test_expired_leases_and_dead_workers_release_their_attempts(runtime: Runtime) -> None:
    account = await create_account(runtime)
    await accept(runtime, account, 4)
    now = utcnow()
    await runtime.store.claim_due_attempts("short", 2, 1, now)
    await runtime.store.claim_due_attempts("dead", 2, 3600, now)
    assert await runtime.store.release_expired_leases(now + timedelta(seconds=2)) == {
        "short": ("lease expired", 2)}
    assert await runtime.store.release_expired_leases(now + timedelta(seconds=2), ["dead"]) == {
        "dead": ("heartbeat lost", 2)}
    assert {s for (s,) in await rows(runtime, attempts.c.state)} == {"due"}


async def test_secrets_are_encrypted_at_rest(runtime: Runtime) -> None:
    account = await create_account(runtime, api_password="very-secret-password")
    from omnirelay.store.tables import accounts

    stored = await rows(runtime, accounts.c.api_password_enc)
    assert "very-secret-password" not in stored[0][0]
    assert (await runtime.store.account_by_id(account.id)).api_password == "very-secret-password"  # type: ignore[union-attr]
    assert "very-secret-password" not in repr(account)


async def test_a_report_from_another_channel_is_ignored(runtime: Runtime) -> None:
    account = await create_account(runtime)
    await accept(runtime, account, 1)
    mid = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    await runtime.store.record_send_outcomes("w", [SendResult(mid)], {mid: "sms"}, utcnow())
    await runtime.store.apply_reports([StatusReport("whatsapp", "FAILED", message_id=mid)], utcnow())
    assert await rows(runtime, attempts.c.state, attempts.c.status) == [("sent", None)]
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", message_id=mid)], utcnow())
    assert await rows(runtime, attempts.c.state, attempts.c.status) == [("done", "DELIVRD")]


async def test_one_outcome_the_store_refuses_does_not_sink_its_batch(runtime: Runtime) -> None:
    account = await create_account(runtime)
    await accept(runtime, account, 5)
    claimed = await runtime.store.claim_due_attempts("w", 10, 30, utcnow())
    ids = sorted(c.message_id for c in claimed)
    bad = ids[2]
    outcomes = [SendResult(m, provider_refs=(f"ref-{m}",)) for m in ids if m != bad]
    outcomes.append(SendResult(bad, status="NOT-A-STATUS", provider_refs=("ref-bad",)))
    await runtime.store.record_send_outcomes("w", outcomes, {m: "sms" for m in ids}, utcnow())
    states = {mid: (state, status) for mid, state, status
              in await rows(runtime, attempts.c.id, attempts.c.state, attempts.c.status)}
    assert {states[m] for m in ids if m != bad} == {("sent", None)}
    # resolved by a rule, not left leased to be submitted again when the lease runs out
    assert states[bad] == ("done", "FAILED")
    refused = runtime.metrics.registry.get_sample_value("omnirelay_unit_failures_total",
                                                        {"kind": "send_outcome"})
    assert refused == 1
    # the others' receipts still match
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", provider_ref=f"ref-{ids[0]}")],
                                      utcnow())
    assert (await rows(runtime, attempts.c.id, attempts.c.status))[0] == (ids[0], "DELIVRD")


async def test_a_reused_upstream_id_belongs_to_the_newest_submission(runtime: Runtime) -> None:
    from omnirelay.store.tables import provider_refs, unmatched_reports

    account = await create_account(runtime)
    await accept(runtime, account, 1)
    old = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    await runtime.store.record_send_outcomes("w", [SendResult(old, provider_refs=("00A1",))],
                                             {old: "sms"}, utcnow())
    # a receipt for an id nobody holds yet, parked long before the new submission
    stale = StatusReport("sms", "UNDELIV", provider_ref="00B2", err=1)
    await runtime.store.apply_reports([stale], utcnow() - timedelta(minutes=5))
    await accept(runtime, account, 1)
    new = (await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))[0].message_id
    submitted = utcnow()
    await runtime.store.record_send_outcomes(
        "w", [SendResult(new, provider_refs=("00A1", "00B2"), parts_count=2)],
        {new: "sms"}, utcnow(), submitted_at=submitted)
    assert await rows(runtime, provider_refs.c.ref, provider_refs.c.attempt_id) == [
        ("00A1", new), ("00B2", new)]
    assert await rows(runtime, unmatched_reports.c.ref) == [], "the stale receipt is dropped"
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", provider_ref="00A1"),
                                       StatusReport("sms", "DELIVRD", provider_ref="00B2")], utcnow())
    states = dict((i, (s, st)) for i, s, st in
                  await rows(runtime, attempts.c.id, attempts.c.state, attempts.c.status))
    assert states[new] == ("done", "DELIVRD")
    assert states[old] == ("sent", None), "the old holder is not touched"


async def test_a_batch_of_accepts_survives_one_the_store_refuses(runtime: Runtime) -> None:
    """Requests of several accounts share a group commit: one unit's bad data (here a deadline
    past year 9999) fails that request only."""
    from datetime import datetime

    from omnirelay.core.accept import NewOmnimessage
    from omnirelay.core.omnimessage import PlannedAttempt
    from omnirelay.store.tables import omnimessages

    good_account = await create_account(runtime, "good")
    other = await create_account(runtime, "other")
    good = await asyncio.gather(*(accept(runtime, good_account, 1) for _ in range(20)),
                                return_exceptions=True)
    poison = NewOmnimessage(id="99999999-9999-4999-8999-999999999999", account_id=other.id,
                            surface="messente", to=TO, priority=1,
                            time_to_send=datetime(9999, 12, 31, 23, 59, 59), dlr_url=None,
                            text_store="plaintext",
                            attempts=(PlannedAttempt("99999999-9999-4999-8999-999999999998", 0,
                                                 "sms", "Acme", {"text": "x"}, 21600),))
    results = await asyncio.gather(
        *(accept(runtime, good_account, 1) for _ in range(20)), runtime.accept([poison]),
        *(accept(runtime, good_account, 1) for _ in range(20)), return_exceptions=True)
    assert isinstance(results[20], OverflowError), results[20]
    assert not [r for r in results[:20] + results[21:] if isinstance(r, BaseException)]
    assert not [r for r in good if isinstance(r, BaseException)]
    stored = await rows(runtime, omnimessages.c.account_id)
    assert stored.count((good_account.id,)) == 60 and (other.id,) not in stored


async def test_upstream_ids_are_purged_once_their_attempt_ended_long_ago(runtime: Runtime) -> None:
    from omnirelay.store.tables import provider_refs

    account = await create_account(runtime)
    await accept(runtime, account, 2)
    done, waiting = sorted(c.message_id for c in
                           await runtime.store.claim_due_attempts("w", 10, 30, utcnow()))
    await runtime.store.record_send_outcomes(
        "w", [SendResult(done, provider_refs=("r1",)), SendResult(waiting, provider_refs=("r2",))],
        {done: "sms", waiting: "sms"}, utcnow())
    await runtime.store.apply_reports([StatusReport("sms", "DELIVRD", provider_ref="r1")], utcnow())
    assert await runtime.store.purge_provider_refs(utcnow() - timedelta(hours=1)) == 0
    assert await runtime.store.purge_provider_refs(utcnow() + timedelta(seconds=1)) == 1
    assert await rows(runtime, provider_refs.c.ref) == [("r2",)], "a live attempt keeps its ids"


async def test_rows_written_through_the_driver_read_back_as_sqlalchemy_writes_them(
        runtime: Runtime) -> None:
    """The busiest inserts skip SQLAlchemy's parameter processing (store.statements.Raw); what
    they store must read back exactly as SQLAlchemy's own types would have stored it."""
    from datetime import datetime

    from omnirelay.core.accept import NewOmnimessage
    from omnirelay.core.omnimessage import PlannedAttempt
    from omnirelay.store.tables import omnimessages

    account = await create_account(runtime)
    now = datetime(2026, 12, 1, 9, 5, 7)  # no microseconds: the case a lax format gets wrong
    later = datetime(2026, 12, 2, 10, 0, 0, 123456)
    content = {"text": "Tere, ütle ✓", "udh": None, "nested": {"n": [1, 2.5, True]}}
    await runtime.store.insert_omnimessages([NewOmnimessage(
        id="aaaaaaaa-0000-4000-8000-000000000001", account_id=account.id, surface="messente",
        to=TO, priority=1, time_to_send=later, dlr_url=None, text_store="plaintext",
        attempts=(PlannedAttempt("aaaaaaaa-0000-4000-8000-000000000002", 0, "sms", "Acme", content,
                             60),), extra=None)], now)
    (row,) = await rows(runtime, attempts.c.id, attempts.c.content, attempts.c.due_at,
                        attempts.c.deadline, attempts.c.updated_at)
    assert row[1:] == (content, later, later + timedelta(seconds=60), now)
    (message,) = await rows(runtime, omnimessages.c.id, omnimessages.c.time_to_send,
                            omnimessages.c.created_at, omnimessages.c.extra)
    assert message[1:] == (later, now, None)
    # and SQLAlchemy's comparisons order them as datetimes
    assert await runtime.store.claim_due_attempts("w", 10, 30, now) == []
    claimed = await runtime.store.claim_due_attempts("w", 10, 30, later)
    assert [c.message_id for c in claimed] == [row[0]]


async def test_a_batched_write_leaves_what_one_statement_per_row_would(runtime: Runtime) -> None:
    """On PostgreSQL the busiest updates run as one UPDATE ... FROM unnest(arrays) for the whole
    batch (store.statements.Raw `batched`); the rows must end as the row-by-row statement leaves
    them on SQLite: each key's last row wins (PostgreSQL refuses an upsert that names a key
    twice), NULLs stay NULL, rows not named stay untouched."""
    from omnirelay.store import statements as S
    from omnirelay.store.tables import provider_refs

    account = await create_account(runtime)
    (message,) = await accept(runtime, account, 1)
    attempt_id = message.attempts[0].message_id

    def work(conn: Any) -> None:
        S.upsert_refs.run(conn, [{"channel": "sms", "ref": f"s:{n}", "attempt_id": attempt_id,
                                  "part": n} for n in (2, 0, 1, 2)])  # s:2 twice: once stored
        S.set_part_status.run(conn, [
            {"c": "sms", "r": "s:0", "s": "ENROUTE", "e": None},
            {"c": "sms", "r": "s:1", "s": "FAILED", "e": 1},
            {"c": "sms", "r": "s:0", "s": "DELIVRD", "e": None},  # the later report wins
            {"c": "sms", "r": "s:9", "s": "DELIVRD", "e": None}])  # no such ref: nothing

    await runtime.db.write(work)
    assert await rows(runtime, provider_refs.c.ref, provider_refs.c.part, provider_refs.c.status,
                      provider_refs.c.err) == [
        ("s:0", 0, "DELIVRD", None), ("s:1", 1, "FAILED", 1), ("s:2", 2, None, None)]
