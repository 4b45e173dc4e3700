"""Charging at the claim under real concurrency: four stores (four engines, as four processes
would have) claim one queue and charge one prepaid balance side by side. Exactly the attempts the
balance covers are handed out, the rest fail with err 4, and the balance ends at zero, never
below; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from omnirelay.core.accept import NewOmnimessage
from omnirelay.core.delivery import OutboundMessage
from omnirelay.core.omnimessage import PlannedAttempt
from omnirelay.core.pricing import parse_csv
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.store.pricing import Pricing
from omnirelay.store.queries import Store
from tests.support import create_account, make_settings
from tests.templates import premigrate

MESSAGES = 30
COVERED = 10  # the balance pays for this many


@pytest.fixture
async def runtimes(database_url: str) -> AsyncIterator[list[Runtime]]:
    settings = make_settings(database_url)
    premigrate(database_url)
    started = [Runtime(settings) for _ in range(4)]
    started[0].migrate()
    yield started
    for runtime in started:
        runtime.close()


def message(account_id: int, n: int) -> NewOmnimessage:
    return NewOmnimessage(
        id=str(uuid.uuid4()), account_id=account_id, surface="messente", to="+37255512345",
        priority=1, time_to_send=None, dlr_url=None, text_store="plaintext",
        attempts=(PlannedAttempt(str(uuid.uuid4()), 0, "sms", "Shop", {"text": f"m{n}"}, 3600),))


async def drain(store: Store, owner: str) -> list[OutboundMessage]:
    """Claim two at a time until nothing is due."""
    handed: list[OutboundMessage] = []
    while True:
        claim = await store.claim_due(owner, 2, 60, utcnow())
        handed.extend(claim.attempts)
        if not claim.attempts and await store.next_due_time() is None:
            return handed


async def test_concurrent_claims_charge_one_balance_exactly(runtimes: list[Runtime]) -> None:
    first = runtimes[0]
    account = await create_account(first)
    pricing = Pricing(first.store.db)
    await pricing.replace_prices(None, parse_csv("Country,Code,MCCMNC,Network,Price\n"
                                                 "Estonia,EE,,,0.04\n"), ["sms"])
    assert await pricing.credit(account.id, COVERED * 40_000, utcnow()) == COVERED * 40_000
    messages = [message(account.id, n) for n in range(MESSAGES)]
    await first.store.insert_omnimessages(messages, utcnow())

    handed = await asyncio.gather(*(drain(r.store, f"worker-{i}")
                                    for i, r in enumerate(runtimes)))

    ids = [a.message_id for batch in handed for a in batch]
    assert len(ids) == len(set(ids)) == COVERED
    assert await pricing.balance(account.id) == 0
    views = [await first.store.omnimessage(account.id, m.id) for m in messages]
    attempts = [v.attempts[0] for v in views if v is not None]
    refused = [a for a in attempts if a.err == 4]
    assert len(refused) == MESSAGES - COVERED
    assert all(a.status == "FAILED" and a.charged_parts is None for a in refused)
    charged = [a for a in attempts if a.message_id in set(ids)]
    assert [(a.part_price_micros, a.charged_parts) for a in charged] == [(40_000, 1)] * COVERED
