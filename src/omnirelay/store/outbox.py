"""The webhook outbox: leasing due callbacks (in each message's order, a bounded share per
receiver), recording how each delivery went, and what is queued."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, func, select

from omnirelay.core.destinations import receiver_host
from omnirelay.metrics import Metrics
from omnirelay.store import statements as S
from omnirelay.store.database import Database
from omnirelay.store.tables import webhooks
from omnirelay.store.writer import Op, Submission, Writer, log_refused

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClaimedWebhook:
    id: int
    account_id: int
    kind: str
    url: str
    body: bytes
    tries: int


class WebhookClaim(NamedTuple):
    limit: int
    lease_seconds: float
    per_receiver: int | None
    excluded_origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    id: int
    delivered: bool
    retry_in: float = 0.0  # seconds, when not delivered
    error: str | None = None
    give_up: bool = False
    deferred: bool = False  # put back without trying (receiver saturated); not a try
    status: int | None = None  # the receiver's HTTP status, when it answered


class Outbox:
    def __init__(self, db: Database, writer: Writer, metrics: Metrics | None) -> None:
        self.db = db
        self.writer = writer
        self.metrics = metrics
        self._webhook_results_op: Op[WebhookResult, datetime, None] = Op(
            "webhook_results", 4, self._finish_webhooks, isolated_units=True)
        self._claim_webhooks_op: Op[WebhookClaim, datetime, list[ClaimedWebhook]] = Op(
            "claim_webhooks", 7, self._claim_webhooks, merge=False)

    async def claim_webhooks(self, limit: int, lease_seconds: float, now: datetime, *,
                             per_receiver: int | None = None,
                             excluded_origins: Sequence[str] = ()) -> list[ClaimedWebhook]:
        """Lease due webhooks; a report waits while an earlier one of the same message is pending,
        so that each message's reports arrive in order. At most `per_receiver` go to one
        receiver (host:port); rows under `excluded_origins` (receivers that are full) are left
        alone, so a receiver's backlog is not claimed just to be put back."""
        claim = WebhookClaim(limit, lease_seconds, per_receiver, tuple(sorted(excluded_origins)))
        written = await self.writer.submit(self._claim_webhooks_op, [claim], now)
        return written.value or []

    @staticmethod
    def _claim_webhooks(conn: Connection, submissions: Sequence[Submission[WebhookClaim, datetime]]
                        ) -> list[list[ClaimedWebhook]]:
        now, claim = submissions[0].context, submissions[0].units[0]
        candidates = conn.execute(S.claim_webhook_candidates(claim.excluded_origins),
                                  {"now": now, "limit": claim.limit}).all()
        taken: dict[str, int] = {}
        ids: list[int] = []
        for wid, url in candidates:
            receiver = receiver_host(url)
            if claim.per_receiver is not None and taken.get(receiver, 0) >= claim.per_receiver:
                continue
            taken[receiver] = taken.get(receiver, 0) + 1
            ids.append(wid)
        if not ids:
            return [[]]
        rows = conn.execute(S.lease_webhooks, {
            "ids": ids, "lease_until": now + timedelta(seconds=claim.lease_seconds)})
        return [sorted((ClaimedWebhook(id=r[0], account_id=r[1], kind=r[2], url=r[3],
                                       body=bytes(r[4]), tries=r[5])
                        for r in rows), key=lambda w: w.id)]

    async def finish_webhooks(self, results: Sequence[WebhookResult], now: datetime) -> None:
        if not results:
            return
        written = await self.writer.submit(self._webhook_results_op, results, now)
        for result, error in written.refused:
            log_refused(log, self.metrics, "webhook_result", f"the result of webhook {result.id}",
                        error, "it is tried again when its lease runs out")

    @staticmethod
    def _finish_webhooks(conn: Connection,
                         submissions: Sequence[Submission[WebhookResult, datetime]]) -> list[None]:
        for submission in submissions:
            now = submission.context
            by_status: dict[int | None, list[int]] = {}
            for r in submission.units:
                if r.delivered:
                    by_status.setdefault(r.status, []).append(r.id)
            for status, done in by_status.items():
                conn.execute(S.webhooks_delivered, {"ids": done, "now": now, "status": status})
            failed = [r for r in submission.units if not r.delivered]
            if failed:
                conn.execute(S.webhooks_failed, [
                    {"wid": r.id, "new_state": "dead" if r.give_up else "pending",
                     "inc": 0 if r.deferred else 1,
                     "next_try": now + timedelta(seconds=r.retry_in),
                     "message": (r.error or "")[:500], "status": r.status} for r in failed])
        return [None] * len(submissions)

    async def next_webhook_time(self, now: datetime, excluded_origins: Sequence[str] = ()
                                ) -> datetime | None:
        """When the next webhook the claim would take falls due: leased ones, those waiting for
        an earlier report of their message and those under `excluded_origins` do not count."""
        statement = S.next_claimable_webhook(tuple(sorted(excluded_origins)))

        def work(conn: Connection) -> datetime | None:
            return conn.execute(statement, {"now": now}).scalar()

        return await self.db.read(work)

    async def webhook_counts(self) -> dict[str, int]:
        def work(conn: Connection) -> dict[str, int]:
            rows = conn.execute(select(webhooks.c.state, func.count())
                                .group_by(webhooks.c.state)).all()
            return {r[0]: int(r[1]) for r in rows}

        return await self.db.read(work)
