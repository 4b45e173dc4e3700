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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from omnirelay.core.fallback import Next, apply_status, combine_parts
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

    def __or__(self, other: Effects) -> Effects:
        return Effects(self.attempts or other.attempts, self.webhooks or other.webhooks)


@dataclass(frozen=True, slots=True)
class Report:
    """A status for an attempt, found by our message_id or by the upstream's ref."""

    channel: str
    status: str
    message_id: str | None = None
    provider_ref: str | None = None
    err: int | None = None
    error: str | None = None
    occurred_at: datetime | None = None


def _attempt_rows(conn: Connection, statement: Any, ids: Sequence[str]
                  ) -> dict[str, dict[str, Any]]:
    return {row["id"]: dict(row) for row in conn.execute(statement, {"ids": list(ids)}).mappings()}


class StatusWriter:
    def __init__(self, conn: Connection, report_builder: ReportBuilder, now: datetime,
                 notify: Callable[[Connection, str], None], source: str = "receipt") -> None:
        self.conn = conn
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

    def apply(self, reports: Sequence[Report]) -> None:
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
        """Apply parked receipts whose refs are now known. With `since` (ref -> when its new
        holder's submission began), a receipt parked before then cannot be the new holder's: it
        is dropped, never applied to a message it does not belong to."""
        if not keys:
            return
        rows = self.conn.execute(S.parked_for_keys, {"keys": list(keys)}).mappings().all()
        if not rows:
            return
        self.conn.execute(S.delete_parked, {"ids": [r["id"] for r in rows]})
        since = since or {}
        kept = [r for r in rows if (start := since.get((r["channel"], r["ref"]))) is None
                or r["created_at"] >= start]
        self.apply([Report(channel=r["channel"], status=r["status"], provider_ref=r["ref"],
                           err=r["err"], error=r["error"], occurred_at=r["occurred_at"])
                    for r in kept])

    def _resolve_refs(self, reports: list[Report]) -> list[Report]:
        """Map upstream refs to attempts, park what cannot be matched yet, and combine the parts
        of multi-part messages into one status per attempt."""
        keys = {(r.channel, r.provider_ref) for r in reports}
        found = {(row[0], row[1]): row[2] for row in self.conn.execute(
            S.refs_for_keys, {"keys": list(keys)}).all()}
        parked: list[dict[str, Any]] = []
        part_updates: list[dict[str, Any]] = []
        last: dict[str, Report] = {}
        for report in reports:
            key = (report.channel, report.provider_ref or "")
            if key not in found:
                parked.append({"channel": report.channel, "ref": report.provider_ref,
                               "status": report.status, "err": report.err,
                               "error": report.error, "occurred_at": report.occurred_at,
                               "created_at": self.now})
                continue
            part_updates.append({"c": key[0], "r": key[1], "s": report.status, "e": report.err})
            last[found[key]] = report
        if parked:
            self.conn.execute(S.park_reports, parked)
        if part_updates:
            S.set_part_status.run(self.conn, part_updates)
        if not last:
            return []
        parts: dict[str, list[Status | None]] = {}
        for attempt_id, status in self.conn.execute(S.part_statuses, {"ids": list(last)}):
            parts.setdefault(attempt_id, []).append(Status(status) if status else None)
        resolved: list[Report] = []
        for attempt_id, report in last.items():
            statuses = parts.get(attempt_id, [])
            if len(statuses) <= 1:
                resolved.append(Report(report.channel, report.status, attempt_id, None,
                                       report.err, report.error, report.occurred_at))
                continue
            combined = combine_parts(statuses)
            if combined is not None:
                own = Status(report.status) == combined
                resolved.append(Report(report.channel, combined, attempt_id, None,
                                       report.err if own else None,
                                       report.error if own else None, report.occurred_at))
        return resolved

    def _transition(self, row: dict[str, Any], report: Report) -> None:
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
        self._draft(row, "status", report.occurred_at or self.now)
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
            content=row["content"],
        )
        for draft in self.build(ctx):
            self.drafts.append((row["account_id"], row["omnimessage_id"], draft))

    # writing ------------------------------------------------------------------------------

    @property
    def effects(self) -> Effects:
        return Effects(attempts=bool(self.start_after), webhooks=bool(self.drafts))

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
        waiting = self.conn.execute(S.waiting_variants, {"oms": list(self.start_after)}).all()
        starts: dict[str, dict[str, Any]] = {}
        for attempt_id, omnimessage_id, seq, validity in waiting:
            if omnimessage_id not in starts and seq > self.start_after[omnimessage_id]:
                starts[omnimessage_id] = {"mid": attempt_id,
                                          "deadline": self.now + timedelta(seconds=validity)}
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
         "body": d.body, "headers": {}, "state": "pending", "tries": 0, "next_try_at": now,
         "created_at": now}
        for account_id, order_key, d in drafts
    ])


def content_hash(canonical_json: str) -> str:
    return hashlib.sha256(canonical_json.encode()).hexdigest()
