"""Omnimessages and their attempts as the API sees them: accepting them (with an idempotency key's
answer in the same transaction), reading them back, canceling, forgetting their content and
deleting them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from omnirelay.core.accept import NewOmnimessage
from omnirelay.core.schedule import deadline, first_due
from omnirelay.store import idempotency
from omnirelay.store import statements as S
from omnirelay.store.database import Database
from omnirelay.store.tables import attempts, omnimessages
from omnirelay.store.writer import Op, Submission, Writer


@dataclass(frozen=True, slots=True)
class AttemptView:
    message_id: str
    seq: int
    channel: str
    sender: str
    to: str
    content: dict[str, Any] | None
    state: str
    status: str | None
    err: int | None
    error: str | None
    parts_count: int | None
    sent_at: datetime | None
    updated_at: datetime
    part_price_micros: int | None = None  # what submitting it was charged (store.pricing)
    charged_parts: int | None = None


@dataclass(frozen=True, slots=True)
class OmnimessageView:
    id: str
    account_id: int
    surface: str
    to: str
    state: str
    priority: int
    time_to_send: datetime | None
    dlr_url: str | None
    text_store: str
    extra: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    attempts: tuple[AttemptView, ...] = ()


class Omnimessages:
    def __init__(self, db: Database, writer: Writer) -> None:
        self.db = db
        self.writer = writer
        self._accept_op: Op[NewOmnimessage, datetime, None] = Op("accept", 0, self._accept)
        # An accept with its Idempotency-Key: one submission, so one fate for both.
        self._accept_keyed_op: Op[NewOmnimessage, tuple[datetime, idempotency.KeyRecord], None] = (
            Op("accept_keyed", 0, self._accept_keyed))

    # accepting -----------------------------------------------------------------------------

    async def insert_omnimessages(self, items: Sequence[NewOmnimessage], now: datetime,
                                  remember: idempotency.KeyRecord | None = None) -> None:
        """Store accepted omnimessages and their attempts; committed when this returns. Requests
        that arrive while a transaction is being written share the next one. With `remember`,
        its key is committed with them (even for no items), or KeyTaken is raised and nothing
        is stored when another request holds the key."""
        if remember is None:
            if items:
                await self.writer.submit(self._accept_op, items, now)
            return
        try:
            await self.writer.submit(self._accept_keyed_op, items, (now, remember))
        except IntegrityError:
            found = await self.remembered(remember.account_id, remember.key,
                                          remember.expired_before)
            if found is None:
                raise
            raise idempotency.KeyTaken(remember.key, found) from None

    async def remembered(self, account_id: int, key: str, since: datetime
                         ) -> idempotency.Remembered | None:
        """The answer stored under an idempotency key since `since`, if any."""
        return await self.db.read(lambda conn: idempotency.lookup(conn, account_id, key, since))

    def _accept_keyed(self, conn: Connection, submissions: Sequence[
            Submission[NewOmnimessage, tuple[datetime, idempotency.KeyRecord]]]) -> list[None]:
        self._accept(conn, [Submission(s.units, s.context[0]) for s in submissions])
        idempotency.remember(conn, [(s.context[1], s.context[0]) for s in submissions])
        return [None] * len(submissions)

    def _accept(self, conn: Connection, submissions: Sequence[Submission[NewOmnimessage, datetime]]
                ) -> list[None]:
        message_rows: list[dict[str, Any]] = []
        attempt_rows: list[dict[str, Any]] = []
        for submission in submissions:
            now = submission.context
            for item in submission.units:
                message_rows.append({
                    "id": item.id, "account_id": item.account_id, "surface": item.surface,
                    "to": item.to, "state": "accepted", "priority": item.priority,
                    "time_to_send": item.time_to_send, "dlr_url": item.dlr_url,
                    "text_store": item.text_store, "variants": len(item.attempts),
                    "extra": item.extra, "created_at": now, "updated_at": now,
                })
                start = first_due(item.time_to_send, now)
                for attempt in item.attempts:
                    first = attempt.seq == 0
                    attempt_rows.append({
                        "id": attempt.message_id, "omnimessage_id": item.id,
                        "account_id": item.account_id, "seq": attempt.seq,
                        "channel": attempt.channel, "sender": attempt.sender, "to": item.to,
                        "content": attempt.content,
                        "content_sha256": _content_hash(attempt.content)
                        if item.text_store == "sha256" else None,
                        "validity_seconds": attempt.validity_seconds,
                        "state": "due" if first else "waiting", "priority": item.priority,
                        "due_at": start if first else None,
                        "deadline": deadline(start, attempt.validity_seconds) if first else None,
                        "updated_at": now,
                    })
        S.insert_omnimessages.run(conn, message_rows)
        S.insert_attempts.run(conn, attempt_rows)
        self.db.notify(conn, "attempts")
        return [None] * len(submissions)

    # reading -------------------------------------------------------------------------------

    async def omnimessage(self, account_id: int, omnimessage_id: str) -> OmnimessageView | None:
        def work(conn: Connection) -> OmnimessageView | None:
            row = conn.execute(select(omnimessages).where(
                omnimessages.c.id == omnimessage_id, omnimessages.c.account_id == account_id,
            )).mappings().first()
            if row is None:
                return None
            return self._view(row, self._attempt_views(conn, [omnimessage_id])[omnimessage_id])

        return await self.db.read(work)

    async def list_omnimessages(
        self, account_id: int, *, surface: str, to: str | None = None,
        sender: str | None = None, sent_after: datetime | None = None,
        sent_before: datetime | None = None, offset: int = 0, limit: int = 50,
    ) -> list[OmnimessageView]:
        """Newest first, as Twilio lists messages."""
        def work(conn: Connection) -> list[OmnimessageView]:
            query = select(omnimessages).where(omnimessages.c.account_id == account_id,
                                               omnimessages.c.surface == surface)
            if to is not None:
                query = query.where(omnimessages.c.to == to)
            if sender is not None:
                query = query.where(exists().where(attempts.c.omnimessage_id == omnimessages.c.id,
                                                   attempts.c.sender == sender))
            if sent_after is not None:
                query = query.where(omnimessages.c.created_at >= sent_after)
            if sent_before is not None:
                query = query.where(omnimessages.c.created_at < sent_before)
            query = query.order_by(omnimessages.c.created_at.desc(), omnimessages.c.id.desc())
            rows = conn.execute(query.offset(offset).limit(limit)).mappings().all()
            views = self._attempt_views(conn, [r["id"] for r in rows])
            return [self._view(r, views[r["id"]]) for r in rows]

        return await self.db.read(work)

    def _attempt_views(self, conn: Connection, ids: list[str]) -> dict[str, list[AttemptView]]:
        result: dict[str, list[AttemptView]] = {i: [] for i in ids}
        if not ids:
            return result
        rows = conn.execute(select(attempts).where(attempts.c.omnimessage_id.in_(ids))
                            .order_by(attempts.c.omnimessage_id, attempts.c.seq)).mappings()
        for r in rows:
            result[r["omnimessage_id"]].append(AttemptView(
                message_id=r["id"], seq=r["seq"], channel=r["channel"], sender=r["sender"],
                to=r["to"], content=r["content"], state=r["state"], status=r["status"],
                err=r["err"], error=r["error"], parts_count=r["parts_count"],
                sent_at=r["sent_at"], updated_at=r["updated_at"],
                part_price_micros=r["part_price_micros"], charged_parts=r["charged_parts"],
            ))
        return result

    @staticmethod
    def _view(row: Any, attempt_views: list[AttemptView]) -> OmnimessageView:
        return OmnimessageView(
            id=row["id"], account_id=row["account_id"], surface=row["surface"], to=row["to"],
            state=row["state"], priority=row["priority"], time_to_send=row["time_to_send"],
            dlr_url=row["dlr_url"], text_store=row["text_store"], extra=row["extra"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            attempts=tuple(attempt_views),
        )

    # canceling and editing -----------------------------------------------------------------

    async def cancel(self, account_id: int, omnimessage_id: str, now: datetime) -> bool:
        """Cancel an omnimessage none of whose attempts has been claimed yet.

        The decisive statement updates the first attempt's row, the same row a claim locks, so a
        cancel and a claim cannot both win."""
        def work(conn: Connection) -> bool:
            won = conn.execute(update(attempts).where(
                attempts.c.omnimessage_id == omnimessage_id, attempts.c.account_id == account_id,
                attempts.c.seq == 0, attempts.c.state == "due",
            ).values(state="canceled", updated_at=now)).rowcount
            if won != 1:
                return False
            conn.execute(update(attempts).where(
                attempts.c.omnimessage_id == omnimessage_id, attempts.c.state == "waiting",
            ).values(state="canceled", updated_at=now))
            conn.execute(update(omnimessages).where(omnimessages.c.id == omnimessage_id)
                         .values(state="canceled", updated_at=now))
            return True

        return await self.db.write(work)

    async def forget_content(self, account_id: int, omnimessage_id: str, now: datetime) -> bool:
        def work(conn: Connection) -> bool:
            found = conn.execute(update(omnimessages).where(
                omnimessages.c.id == omnimessage_id, omnimessages.c.account_id == account_id,
            ).values(updated_at=now)).rowcount
            conn.execute(update(attempts).where(attempts.c.omnimessage_id == omnimessage_id)
                         .values(content=None, content_sha256=None))
            return bool(found)

        return await self.db.write(work)

    async def delete_omnimessage(self, account_id: int, omnimessage_id: str) -> bool:
        """Delete a finished or canceled message; one still in flight is refused (False)."""
        def work(conn: Connection) -> bool:
            busy = conn.execute(select(func.count()).select_from(attempts).where(
                attempts.c.omnimessage_id == omnimessage_id,
                attempts.c.state.in_(("due", "sending", "sent")),
            )).scalar_one()
            if busy:
                return False
            conn.execute(delete(attempts).where(attempts.c.omnimessage_id == omnimessage_id,
                                                attempts.c.account_id == account_id))
            return bool(conn.execute(delete(omnimessages).where(
                omnimessages.c.id == omnimessage_id, omnimessages.c.account_id == account_id,
            )).rowcount)

        return await self.db.write(work)


def _content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
