"""Applying status reports inside one transaction, in bulk.

A `StatusWriter` reads the attempts a batch of reports concerns with one query, decides each
report's consequence with the pure fallback rule (core.fallback), and writes every consequence —
attempt updates, later variants skipped or started, chains ended, status events, webhook outbox —
with a few executemany statements, however many reports the batch holds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from omnirelay.core import multipart
from omnirelay.core.delivery import StatusReport
from omnirelay.core.fallback import Next, apply_status, next_variant
from omnirelay.core.reports import ReportContext, WebhookDraft
from omnirelay.core.statuses import Status
from omnirelay.store import statements as S

log = logging.getLogger(__name__)

ReportBuilder = Callable[[ReportContext], list[WebhookDraft]]


@dataclass(frozen=True, slots=True)
class Effects:
    """What a write set in motion, so the caller wakes only the loops that have work."""

    attempts: bool = False  # a next variant became due
    webhooks: bool = False  # callbacks were queued
    # receipts that matched no attempt: parked for a later match, or dropped as they cannot
    # belong to the attempt that now holds their ref (counted once, on the first submission)
    parked: int = 0
    dropped: int = 0
    parked_ref: str = ""  # one of the parked receipts' refs, for the log line

    def __or__(self, other: Effects) -> Effects:
        return Effects(self.attempts or other.attempts, self.webhooks or other.webhooks,
                       self.parked + other.parked, self.dropped + other.dropped,
                       self.parked_ref or other.parked_ref)

    def per_submission(self, count: int) -> list[Effects]:
        """One result per merged submission; the counts ride on the first only, so that adding
        up the submissions' results counts each receipt once."""
        rest = replace(self, parked=0, dropped=0, parked_ref="")
        return [self] + [rest] * (count - 1)


def _attempt_rows(conn: Connection, statement: Any, ids: Sequence[str]
                  ) -> dict[str, dict[str, Any]]:
    return {row["id"]: dict(row) for row in conn.execute(statement, {"ids": list(ids)}).mappings()}


def _not_before(at: datetime, sent_at: datetime | None) -> datetime:
    """A receipt's done date has minute resolution: one written in the minute of the submit
    would otherwise say the message was delivered before it was sent."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return sent_at if sent_at is not None and at < sent_at else at


class StatusWriter:
    def __init__(self, conn: Connection, report_builder: ReportBuilder, now: datetime,
                 notify: Callable[[Connection, str], None], source: str = "receipt",
                 match_window: timedelta = timedelta(seconds=120)) -> None:
        self.conn = conn
        self.match_window = match_window  # how long after a submit began its receipt may park
        self.parked: list[tuple[str, str]] = []  # (channel, ref) of the receipts parked here
        self.dropped = 0  # parked receipts that could not be their ref's new holder's
        self.source = source  # what the status events say reported them
        self.build = report_builder
        self.now = now
        self.notify = notify
        self.finished: dict[str, dict[str, Any]] = {}
        self.progressed: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.drafts: list[tuple[int, str, WebhookDraft]] = []
        self.skip_after: dict[str, int] = {}
        self.start_after: dict[str, int] = {}
        self.ended: dict[str, str] = {}  # omnimessage id -> text_store

    # collecting ---------------------------------------------------------------------------

    def apply(self, reports: Sequence[StatusReport]) -> None:
        if not reports:
            return
        resolved = [r for r in reports if r.message_id is not None]
        by_ref = [r for r in reports if r.message_id is None and r.provider_ref is not None]
        if by_ref:
            resolved.extend(self._resolve_refs(by_ref))
        if not resolved:
            return
        rows = _attempt_rows(self.conn, S.attempt_rows_locked,
                             sorted({r.message_id for r in resolved if r.message_id}))
        for report in resolved:
            row = rows.get(report.message_id or "")
            if row is None:
                continue
            if row["channel"] != report.channel:
                # An upstream may only speak for its own channel's attempts.
                log.warning("ignored a %s report naming a %s attempt", report.channel,
                            row["channel"])
                continue
            self._transition(row, report)

    def sent(self, ids: Sequence[str]) -> None:
        """The upstream accepted these attempts: surfaces that report it (Twilio's `sent`) get an
        event; Messente reports statuses only."""
        if not ids:
            return
        for row in _attempt_rows(self.conn, S.attempt_rows_not_messente, ids).values():
            self._draft(row, "sent", self.now)

    def rematch(self, keys: Sequence[tuple[str, str]],
                since: dict[tuple[str, str], datetime | None] | None = None) -> None:
        """Apply parked receipts whose refs are now known. `since` (ref -> when its new holder's
        submission began; unknown: now) bounds what can be the new holder's: a receipt parked
        within `match_window` after then. Any other was for some earlier message (an SMSC that
        reuses ids, another system's traffic): it is dropped, never applied to a message it does
        not belong to."""
        if not keys:
            return
        rows = [row._mapping for row in S.parked_for_keys.rows(self.conn, keys)]
        if not rows:
            return
        self.conn.execute(S.delete_parked, {"ids": [r["id"] for r in rows]})
        since = since or {}
        kept = []
        for row in rows:
            start = since.get((row["channel"], row["ref"])) or self.now - self.match_window
            if start <= row["created_at"] <= start + self.match_window:
                kept.append(row)
                continue
            self.dropped += 1
            log.info("dropped a %s receipt for %s parked at %s: its ref's new holder began "
                     "submitting at %s, so it cannot be that message's", row["channel"],
                     row["ref"], row["created_at"], start)
        self.apply([StatusReport(channel=r["channel"], status=r["status"],
                                 provider_ref=r["ref"], err=r["err"], error=r["error"],
                                 occurred_at=r["occurred_at"])
                    for r in kept])

    def _resolve_refs(self, reports: list[StatusReport]) -> list[StatusReport]:
        """Map upstream refs to attempts, park what cannot be matched yet, and combine the parts
        of multi-part messages into one status per attempt."""
        keys = {(r.channel, r.provider_ref) for r in reports}
        found: dict[tuple[str, str], tuple[str, int]] = {
            (row.channel, row.ref): (row.attempt_id, row.part)
            for row in S.refs_for_keys.rows(self.conn, keys)}
        parked: list[dict[str, Any]] = []
        part_updates: list[dict[str, Any]] = []
        # attempt -> its reports, with their part
        last: dict[str, list[tuple[StatusReport, int]]] = {}
        for report in reports:
            key = (report.channel, report.provider_ref or "")
            if key not in found:
                parked.append({"channel": report.channel, "ref": report.provider_ref,
                               "status": report.status, "err": report.err,
                               "error": report.error, "occurred_at": report.occurred_at,
                               "created_at": self.now})
                continue
            part_updates.append({"c": key[0], "r": key[1], "s": report.status, "e": report.err})
            attempt_id, part = found[key]
            last.setdefault(attempt_id, []).append((report, part))
        if parked:
            self.conn.execute(S.park_reports, parked)
            self.parked.extend((p["channel"], p["ref"]) for p in parked)
        if part_updates:
            S.set_part_status.run(self.conn, part_updates)
        if not last:
            return []
        parts: dict[str, list[Status | None]] = {}
        for attempt_id, status in self.conn.execute(S.part_statuses, {"ids": list(last)}):
            parts.setdefault(attempt_id, []).append(Status(status) if status else None)
        resolved: list[StatusReport] = []
        for attempt_id, candidates in last.items():
            statuses = parts.get(attempt_id, [])
            # the newest, unless an earlier one is for the part that decides (first/last)
            report, part = next((c for c in reversed(candidates) if multipart.decides(
                c[0].parts, c[1], len(statuses))), candidates[-1])
            if len(statuses) <= 1:
                resolved.append(StatusReport(report.channel, report.status, attempt_id, None,
                                             report.err, report.error, report.occurred_at))
                continue
            combined = multipart.message_status(report.parts, part, Status(report.status),
                                                statuses)
            if combined is not None:
                own = Status(report.status) == combined
                resolved.append(StatusReport(report.channel, combined, attempt_id, None,
                                             report.err if own else None,
                                             report.error if own else None, report.occurred_at))
        return resolved

    def _transition(self, row: dict[str, Any], report: StatusReport) -> None:
        current = Status(row["status"]) if row["status"] else None
        outcome = apply_status(row["state"], current, Status(report.status), report.err,
                               report.error)
        if not outcome.record:
            return
        values = {"status": outcome.status.value, "err": outcome.err, "error": outcome.error}
        if outcome.finishes_attempt:
            row["state"] = "done"
            self.progressed.pop(row["id"], None)
            self.finished[row["id"]] = {"mid": row["id"], **values}
        elif row["id"] in self.finished:
            self.finished[row["id"]].update(values)
        else:
            self.progressed[row["id"]] = {"mid": row["id"], **values}
        row.update(values)
        self.events.append({"attempt_id": row["id"], "status": outcome.status.value,
                            "err": outcome.err, "source": self.source, "created_at": self.now})
        self._draft(row, "status", _not_before(report.occurred_at or self.now, row["sent_at"]))
        last = row["seq"] >= row["variants"] - 1
        if outcome.next is Next.END_SUCCESS:
            if not last:
                self.skip_after[row["omnimessage_id"]] = row["seq"]
            self.ended[row["omnimessage_id"]] = row["text_store"]
        elif outcome.next is Next.START_NEXT:
            if not last:
                self.start_after[row["omnimessage_id"]] = row["seq"]
            self.ended.setdefault(row["omnimessage_id"], row["text_store"])

    def _draft(self, row: dict[str, Any], event: str, at: datetime) -> None:
        ctx = ReportContext(
            event=event, surface=row["surface"], account_id=row["account_id"],
            omnimessage_id=row["omnimessage_id"], message_id=row["id"], channel=row["channel"],
            to=row["to"], sender=row["sender"], status=row["status"], err=row["err"],
            error=row["error"], parts_count=row["parts_count"], occurred_at=at,
            dlr_url=row["om_dlr_url"] or row["account_dlr_url"], extra=row["extra"],
            content=row["content"], part_price_micros=row["part_price_micros"],
            charged_parts=row["charged_parts"],
        )
        for draft in self.build(ctx):
            self.drafts.append((row["account_id"], row["omnimessage_id"], draft))

    # writing ------------------------------------------------------------------------------

    @property
    def effects(self) -> Effects:
        return Effects(attempts=bool(self.start_after), webhooks=bool(self.drafts),
                       parked=len(self.parked), dropped=self.dropped,
                       parked_ref=self.parked[0][1] if self.parked else "")

    def flush(self) -> None:
        conn, now = self.conn, self.now
        if self.finished:
            S.finish_attempts.run(conn, [{**v, "now": now} for v in sorted(
                self.finished.values(), key=lambda v: v["mid"])])
        if self.progressed:
            conn.execute(S.progress_attempts, [{**v, "now": now} for v in
                                               sorted(self.progressed.values(),
                                                      key=lambda v: v["mid"])])
        if self.skip_after:
            conn.execute(S.skip_later_variants, [{"om": om, "after": seq, "now": now}
                                                 for om, seq in sorted(self.skip_after.items())])
        if self.start_after:
            self._start_next_variants()
        if self.ended:
            S.end_omnimessages.run(conn, [{"om": om, "now": now} for om in sorted(self.ended)])
            forget = [{"om": om} for om, store in self.ended.items() if store != "plaintext"]
            if forget:
                conn.execute(S.forget_content, forget)
        if self.events:
            S.insert_status_events.run(conn, self.events)
        if self.drafts:
            enqueue_webhooks(conn, self.drafts, now)
            self.notify(conn, "webhooks")
        if self.start_after:
            self.notify(conn, "attempts")

    def _start_next_variants(self) -> None:
        waiting: dict[str, list[tuple[str, int, int]]] = {}
        for attempt_id, omnimessage_id, seq, validity in self.conn.execute(
                S.waiting_variants, {"oms": list(self.start_after)}):
            waiting.setdefault(omnimessage_id, []).append((attempt_id, seq, validity))
        starts: dict[str, dict[str, Any]] = {}
        for omnimessage_id, variants in waiting.items():
            found = next_variant(variants, self.start_after[omnimessage_id], self.now)
            if found is not None:
                starts[omnimessage_id] = {"mid": found[0], "deadline": found[1]}
        for omnimessage_id in starts:
            # a chain with a variant left to try has not ended
            if omnimessage_id not in self.skip_after:
                self.ended.pop(omnimessage_id, None)
        if starts:
            self.conn.execute(S.start_variants, [{**v, "now": self.now} for v in
                                                 sorted(starts.values(), key=lambda v: v["mid"])])


def enqueue_webhooks(conn: Connection, drafts: Sequence[tuple[int, str, WebhookDraft]],
                     now: datetime) -> None:
    conn.execute(S.insert_webhooks, [
        {"account_id": account_id, "order_key": order_key, "kind": d.kind, "url": d.url,
         "body": d.body, "state": "pending", "tries": 0, "next_try_at": now,
         "created_at": now}
        for account_id, order_key, d in drafts
    ])


def content_hash(canonical_json: str) -> str:
    return hashlib.sha256(canonical_json.encode()).hexdigest()
