"""The delivery queue: claiming due attempts (a blacklisted recipient or an uncovered charge ends
one at the claim), recording what the channels said, applying status reports, expiry, releasing
the leases of workers that died, the upstream refs receipts are matched by, and the receipts
parked until their ref is known."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, tuple_, update

from omnirelay.core.delivery import AwaitingReceipt, OutboundMessage, SendResult, StatusReport
from omnirelay.core.logthrottle import LogThrottle
from omnirelay.core.statuses import FAILURE, Err, Status
from omnirelay.metrics import Metrics
from omnirelay.store import statements as S
from omnirelay.store.database import Database, describe
from omnirelay.store.pricing import ChargeItem, Settlement, charge, settle
from omnirelay.store.ratelimits import fair_order, hold_to_send_rates
from omnirelay.store.tables import attempts, provider_refs, unmatched_reports
from omnirelay.store.transitions import Effects, ReportBuilder, StatusWriter
from omnirelay.store.writer import Op, Submission, Writer, log_refused

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """The claimed attempts to hand to channels, and what ending the blacklisted ones (which
    are not among them) set in motion."""

    attempts: list[OutboundMessage]
    effects: Effects


# the `error` of an attempt its account's blacklist stopped
BLACKLISTED = "the recipient is on the account's blacklist"
# the `error` of an attempt its account's prepaid balance did not cover (err 4)
CREDIT_REFUSED = "Error crediting account: the balance does not cover this message"


@dataclass(frozen=True, slots=True)
class OutcomeUnit:
    """A send outcome as the writer takes it: with the channel, the lease holder that may record
    it, and when the channel was handed the attempt."""

    outcome: SendResult
    channel: str
    owner: str
    submitted_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    owner: str
    limit: int
    lease_until: datetime
    channels: tuple[str, ...] | None


class Dispatch:
    def __init__(self, db: Database, writer: Writer, report_builder: ReportBuilder,
                 metrics: Metrics | None, match_window: timedelta) -> None:
        self.db = db
        self.writer = writer
        self.report_builder = report_builder
        self.metrics = metrics
        # a parked receipt may match a submission that began at most this long before it arrived
        self.match_window = match_window
        self._unmatched_log = LogThrottle(log)
        self._outcomes_op: Op[OutcomeUnit, datetime, Effects] = Op(
            "send_outcomes", 1, self._record_outcomes, isolated_units=True, combine=Effects.__or__)
        self._reports_op: Op[StatusReport, datetime, Effects] = Op(
            "reports", 2, self._apply_reports, isolated_units=True, combine=Effects.__or__)
        self._expire_op: Op[int, datetime, int] = Op("expire", 5, self._expire, merge=False)
        self._claim_op: Op[ClaimRequest, datetime, Claim] = Op(
            "claim", 6, self._claim, merge=False)

    async def claim_due_attempts(
        self, owner: str, limit: int, lease_seconds: float, now: datetime,
        channels: Sequence[str] | None = None,
    ) -> list[OutboundMessage]:
        """Lease up to `limit` due attempts, highest priority first, then oldest due time."""
        return (await self.claim_due(owner, limit, lease_seconds, now, channels)).attempts

    async def claim_due(
        self, owner: str, limit: int, lease_seconds: float, now: datetime,
        channels: Sequence[str] | None = None,
    ) -> Claim:
        """As claim_due_attempts, and the attempts whose recipient is on their account's
        blacklist end REJECTD in the same transaction instead of being handed out."""
        request = ClaimRequest(owner, limit, now + timedelta(seconds=lease_seconds),
                               tuple(channels) if channels is not None else None)
        written = await self.writer.submit(self._claim_op, [request], now)
        return written.value or Claim([], Effects())

    def _claim(self, conn: Connection, submissions: Sequence[Submission[ClaimRequest, datetime]]
               ) -> list[Claim]:
        (request,) = submissions[0].units
        now = submissions[0].context
        params: dict[str, Any] = {"now": now, "limit": request.limit,
                                  "window": request.limit * S.FAIR_WINDOW,
                                  "owner": request.owner, "lease_until": request.lease_until}
        statement = S.claim_due
        if request.channels is not None:
            statement, params["channels"] = S.claim_due_on_channels, list(request.channels)
        rows = conn.execute(statement, params).all()
        claimed = [OutboundMessage(
            message_id=r[0], omnimessage_id=r[1], account_id=r[2], channel=r[3], to=r[4],
            sender=r[5], content=r[6] or {}, deadline=r[7], priority=r[8], due_at=r[9],
            tries=r[10],
        ) for r in rows]
        claimed = fair_order(claimed)
        # a blacklisted recipient is stopped first, and so never charged; an attempt its
        # account's send rate holds back is charged when it is claimed again
        stopped = self._stop_blacklisted(conn, claimed, now)
        kept, _held = hold_to_send_rates(conn, stopped.attempts, now)
        return [self._charge(conn, Claim(kept, stopped.effects),
                             {r[0] for r in rows if r[11] is not None}, now)]

    def _charge(self, conn: Connection, claim: Claim, charged: set[str], now: datetime
                ) -> Claim:
        """Charge what is about to be submitted (store.pricing; `charged`: attempts an earlier
        claim charged already). One the balance does not cover fails here, before any upstream
        sees it, with err 4 (Error crediting account)."""
        refused = charge(conn, [ChargeItem(c.message_id, c.account_id, c.channel, c.to,
                                           c.content, c.message_id in charged)
                                for c in claim.attempts], now)
        if not refused:
            return claim
        writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "submit",
                              self.match_window)
        writer.apply([StatusReport(channel=c.channel, status=Status.FAILED,
                             message_id=c.message_id, err=Err.CREDITING,
                             error=CREDIT_REFUSED, occurred_at=now)
                      for c in claim.attempts if c.message_id in refused])
        writer.flush()
        return Claim([c for c in claim.attempts if c.message_id not in refused],
                     claim.effects | writer.effects)

    def _stop_blacklisted(self, conn: Connection, claimed: list[OutboundMessage],
                          now: datetime) -> Claim:
        """Checked at the claim, the last moment before a channel gets an attempt, so that a
        number blacklisted after its message was accepted (scheduled, or further down a
        fallback chain) is caught too. Each later variant is claimed, and stopped, in turn."""
        if not claimed:
            return Claim(claimed, Effects())
        accounts = sorted({c.account_id for c in claimed})
        if conn.execute(S.any_blacklist, {"accounts": accounts}).first() is None:
            return Claim(claimed, Effects())
        listed = {(r[0], r[1]) for r in conn.execute(S.blacklisted, {
            "accounts": accounts, "phones": sorted({c.to for c in claimed})})}
        if not listed:
            return Claim(claimed, Effects())
        writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "blacklist",
                              self.match_window)
        writer.apply([StatusReport(channel=c.channel, status=Status.REJECTD,
                             message_id=c.message_id, err=Err.OPERATOR_BLACKLISTED,
                             error=BLACKLISTED, occurred_at=now)
                      for c in claimed if (c.account_id, c.to) in listed])
        writer.flush()
        return Claim([c for c in claimed if (c.account_id, c.to) not in listed], writer.effects)

    async def record_send_outcomes(
        self, owner: str, outcomes: Sequence[SendResult], channel_of: dict[str, str],
        now: datetime, submitted_at: datetime | None = None,
    ) -> Effects:
        """Apply what the channels said about claimed attempts; committed when this returns.

        `submitted_at` is when the channel was handed the batch: receipts parked before then
        cannot be for these attempts (an SMSC that reuses ids would otherwise hand a new message
        an old one's receipt), so they are dropped rather than matched. An outcome the database
        refuses on its own is recorded without its upstream ids, else as FAILED, so that it is
        never submitted again by a lease running out."""
        if not outcomes:
            return Effects()
        units = [OutcomeUnit(o, channel_of[o.message_id], owner, submitted_at) for o in outcomes]
        written = await self.writer.submit(self._outcomes_op, units, now)
        effects = written.value or Effects()
        self._count_unmatched("dropped", {channel_of[o.message_id] for o in outcomes},
                              effects.dropped)
        for unit, error in written.refused:
            log_refused(log, self.metrics, "send_outcome",
                        f"the send outcome of attempt {unit.outcome.message_id}", error,
                        "recording it without its upstream ids")
            bare = replace(unit, outcome=replace(unit.outcome, provider_refs=()))
            again = await self.writer.submit(self._outcomes_op, [bare], now)
            if not again.refused:
                continue
            log.error("attempt %s: recording it without upstream ids failed too (%s); "
                      "marking it FAILED", unit.outcome.message_id, describe(again.refused[0][1]))
            failed = replace(unit, outcome=SendResult(
                unit.outcome.message_id, status=Status.FAILED, err=Err.TEMPORARY,
                error="the gateway could not record the upstream's answer"))
            await self.writer.submit(self._outcomes_op, [failed], now)
        return effects

    def _record_outcomes(self, conn: Connection,
                         submissions: Sequence[Submission[OutcomeUnit, datetime]]) -> list[Effects]:
        now = max(s.context for s in submissions)
        units = sorted((u for s in submissions for u in s.units),
                       key=lambda u: u.outcome.message_id)  # lock order, see transitions
        writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "submit",
                              self.match_window)
        retry = [u for u in units if u.outcome.retry_after is not None]
        accepted = [u for u in units if u.outcome.retry_after is None]
        # before the updates below: only the lease holder's outcome settles its charge
        settle(conn, [Settlement(u.outcome.message_id, u.owner,
                                 None if u.outcome.retry_after is not None
                                 or (u.outcome.status is not None
                                     and Status(u.outcome.status) in FAILURE)
                                 else u.outcome.parts_count) for u in units], now)
        if retry:
            conn.execute(S.requeue_sending, [
                {"mid": u.outcome.message_id, "owner": u.owner, "now": now,
                 "due": now + timedelta(seconds=u.outcome.retry_after or 0)} for u in retry])
        if accepted:
            S.mark_sent.run(conn, [
                {"mid": u.outcome.message_id, "owner": u.owner, "now": now,
                 "sent": min(u.submitted_at or now, now),
                 "parts": u.outcome.parts_count} for u in accepted])
        refs: dict[tuple[str, str], tuple[str, int, datetime | None]] = {
            (u.channel, ref): (u.outcome.message_id, part, u.submitted_at)
            for u in accepted for part, ref in enumerate(u.outcome.provider_refs)}
        if refs:
            S.upsert_refs.run(conn, [{"channel": c, "ref": r, "attempt_id": a, "part": p}
                                     for (c, r), (a, p, _) in refs.items()])
        writer.sent([u.outcome.message_id for u in accepted if u.outcome.status is None])
        writer.apply([StatusReport(channel=u.channel, status=u.outcome.status,
                             message_id=u.outcome.message_id, err=u.outcome.err,
                             error=u.outcome.error, occurred_at=now)
                      for u in accepted if u.outcome.status is not None])
        writer.rematch(list(refs), since={key: value[2] for key, value in refs.items()})
        writer.flush()
        return writer.effects.per_submission(len(submissions))

    async def apply_reports(self, reports: Sequence[StatusReport], now: datetime) -> Effects:
        """Apply status reports; committed when this returns. A report the database refuses on
        its own is logged and dropped, so an upstream does not redeliver it forever."""
        if not reports:
            return Effects()
        written = await self.writer.submit(self._reports_op, reports, now)
        for report, error in written.refused:
            log_refused(log, self.metrics, "report", f"a {report.status} report for "
                        f"{report.message_id or report.provider_ref}", error, "dropping it")
        effects = written.value or Effects()
        if effects.parked:
            self._count_unmatched("parked", {r.channel for r in reports}, effects.parked)
            self._unmatched_log.warning(
                "%d receipt(s) matched no message (e.g. %s); kept %.0fs for a message whose "
                "submit response has not been recorded yet", effects.parked,
                effects.parked_ref,
                self.match_window.total_seconds())
        return effects

    def _count_unmatched(self, outcome: str, channels: set[str], count: int) -> None:
        # one channel in practice: receipts come from one upstream per batch
        if self.metrics is not None and count:
            self.metrics.unmatched_receipts.labels(min(channels) if channels else "",
                                                   outcome).inc(count)

    def _apply_reports(self, conn: Connection,
                       submissions: Sequence[Submission[StatusReport, datetime]]) -> list[Effects]:
        writer = StatusWriter(conn, self.report_builder, max(s.context for s in submissions),
                              self.db.notify, match_window=self.match_window)
        writer.apply([r for s in submissions for r in s.units])
        writer.flush()
        return writer.effects.per_submission(len(submissions))

    async def expire_attempts(self, now: datetime, limit: int = 1000) -> int:
        """Attempts past their deadline without success become EXPIRED (err 2)."""
        written = await self.writer.submit(self._expire_op, [limit], now)
        return written.value or 0

    def _expire(self, conn: Connection, submissions: Sequence[Submission[int, datetime]]
                ) -> list[int]:
        now = submissions[0].context
        ids = list(conn.execute(S.expired_attempts, {"now": now, "limit": submissions[0].units[0]}))
        if ids:
            writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "expiry")
            writer.apply([StatusReport(channel=c, status=Status.EXPIRED, message_id=i, err=2,
                                 occurred_at=now) for i, c in ids])
            writer.flush()
        return [len(ids)]

    async def release_expired_leases(self, now: datetime, dead_owners: Sequence[str] = ()
                                     ) -> dict[str, tuple[str, int]]:
        """Attempts leased by a worker that died, or whose lease ran out, go back to the queue.
        Returns lease owner -> (why, how many): "heartbeat lost" for the dead workers,
        "lease expired" for the others (their worker is alive but did not finish in time)."""
        def work(conn: Connection) -> dict[str, tuple[str, int]]:
            condition = attempts.c.lease_until < now
            if dead_owners:
                condition = or_(condition, attempts.c.lease_owner.in_(list(dead_owners)))
            owners = conn.execute(
                select(attempts.c.lease_owner, func.count())
                .where(attempts.c.state == "sending", condition)
                .group_by(attempts.c.lease_owner)).all()
            if not owners:
                return {}
            conn.execute(update(attempts).where(attempts.c.state == "sending", condition)
                         .values(state="due", lease_owner=None, lease_until=None, updated_at=now))
            return {str(owner): ("heartbeat lost" if owner in dead_owners else "lease expired",
                                 int(count)) for owner, count in owners}

        return await self.db.write(work)

    async def sent_attempts(self, channels: Sequence[str]) -> list[AwaitingReceipt]:
        """The attempts on `channels` that an upstream accepted and has not reported on yet."""
        if not channels:
            return []

        def work(conn: Connection) -> list[AwaitingReceipt]:
            return [AwaitingReceipt(r[0], r[1], r[2], r[3]) for r in conn.execute(
                select(attempts.c.id, attempts.c.channel, attempts.c.to, attempts.c.sent_at)
                .where(attempts.c.state == "sent", attempts.c.channel.in_(list(channels))))]

        return await self.db.read(work)

    async def next_due_time(self) -> datetime | None:
        def work(conn: Connection) -> datetime | None:
            return conn.execute(select(func.min(attempts.c.due_at))
                                .where(attempts.c.state == "due")).scalar()

        return await self.db.read(work)

    async def next_deadline(self) -> datetime | None:
        def work(conn: Connection) -> datetime | None:
            return conn.execute(select(func.min(attempts.c.deadline))
                                .where(attempts.c.state.in_(("due", "sent")))).scalar()

        return await self.db.read(work)

    async def rematch_unmatched(self, now: datetime, drop_before: datetime | None = None) -> int:
        """Retry parked receipts whose ref has been stored since (by another process, in the
        race of the two writes), each only within the match window after its new holder's
        submit began; and drop those parked before `drop_before` (default: the match window
        ago), which no message claimed. Returns how many refs were retried."""
        drop_before = drop_before if drop_before is not None else now - self.match_window

        def work(conn: Connection) -> tuple[int, int, set[str], dict[str, int]]:
            rows = conn.execute(
                select(unmatched_reports.c.channel, unmatched_reports.c.ref, attempts.c.sent_at)
                .join(provider_refs, (provider_refs.c.channel == unmatched_reports.c.channel)
                      & (provider_refs.c.ref == unmatched_reports.c.ref))
                .join(attempts, attempts.c.id == provider_refs.c.attempt_id)
                .limit(1000)
            ).all()
            writer = StatusWriter(conn, self.report_builder, now, self.db.notify,
                                  match_window=self.match_window)
            if rows:
                writer.rematch([(r[0], r[1]) for r in rows],
                               since={(r[0], r[1]): r[2] for r in rows})
                writer.flush()
            expired: dict[str, int] = {str(r[0]): int(r[1]) for r in conn.execute(
                select(unmatched_reports.c.channel, func.count())
                .where(unmatched_reports.c.created_at < drop_before)
                .group_by(unmatched_reports.c.channel)).all()}
            if expired:
                conn.execute(delete(unmatched_reports)
                             .where(unmatched_reports.c.created_at < drop_before))
            return len(rows), writer.dropped, {r[0] for r in rows}, expired

        retried, dropped, channels, expired = await self.db.write(work)
        self._count_unmatched("dropped", channels, dropped)
        for channel, count in sorted(expired.items()):
            self._count_unmatched("expired", {channel}, count)
            self._unmatched_log.warning(
                "%d %s receipt(s) matched no message within %.0fs of arriving; dropped them",
                count, channel, self.match_window.total_seconds())
        return retried

    async def purge_provider_refs(self, before: datetime, limit: int = 5000) -> int:
        """Forget upstream ids of attempts that ended before `before` (or whose message was
        deleted), a bounded batch at a time."""
        def work(conn: Connection) -> int:
            keys = [(r[0], r[1]) for r in conn.execute(
                select(provider_refs.c.channel, provider_refs.c.ref)
                .select_from(provider_refs.outerjoin(attempts,
                                                     attempts.c.id == provider_refs.c.attempt_id))
                .where(or_(attempts.c.id.is_(None),
                           and_(attempts.c.state == "done", attempts.c.updated_at < before)))
                .limit(limit))]
            if not keys:
                return 0
            return int(conn.execute(delete(provider_refs).where(
                tuple_(provider_refs.c.channel, provider_refs.c.ref).in_(keys))).rowcount)

        return await self.db.write(work)
