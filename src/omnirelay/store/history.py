"""Reads that look back: an account's omnimessages by filter, one omnimessage whole with its
timeline and reports, and inbound messages.

Every query is scoped to one account and walks an index in (time, id) order, newest first, from
the page's position; see migration 0003 for the indexes and tests/api/test_history.py for the
plans on both databases. Channel and status filters are checked per candidate row through the
attempts' (omnimessage_id, seq) index, so a page costs about `limit` probes when the filter is
common and more when it is rare; narrow a rare filter with `since`/`until`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Select, and_, exists, select, tuple_, update

from omnirelay.core.history import InboundFilter, MessageFilter, Position, Redelivery, WebhookFilter
from omnirelay.store.database import Database
from omnirelay.store.tables import (
    attempts,
    inbound_messages,
    omnimessages,
    status_events,
    webhooks,
)


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    message_id: str
    seq: int
    channel: str
    sender: str
    state: str
    status: str | None
    err: int | None
    error: str | None
    parts_count: int | None
    content: dict[str, Any] | None
    due_at: datetime | None
    sent_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: str
    to: str
    surface: str
    state: str
    priority: int
    time_to_send: datetime | None
    text_store: str
    created_at: datetime
    updated_at: datetime
    attempts: tuple[AttemptSummary, ...]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    message_id: str
    status: str
    err: int | None
    source: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class WebhookSummary:
    id: int
    order_key: str
    kind: str
    url: str
    body: bytes
    state: str
    tries: int
    next_try_at: datetime
    last_error: str | None
    last_status: int | None
    created_at: datetime
    done_at: datetime | None


@dataclass(frozen=True, slots=True)
class MessageHistory:
    message: MessageSummary
    events: tuple[StatusEvent, ...]
    reports: tuple[WebhookSummary, ...]


@dataclass(frozen=True, slots=True)
class InboundSummary:
    id: str
    channel: str
    sender: str
    recipient: str
    text: str
    received_at: datetime
    callback: WebhookSummary | None


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next: Position | None  # None on the last page


class History:
    def __init__(self, db: Database) -> None:
        self.db = db

    # account_id None: the rows no account owns (inbound to an unclaimed number); in the two
    # lookups by id, None means any account's (the operator's view).

    async def search(self, account_id: int | None, query: MessageFilter) -> Page[MessageSummary]:
        def work(conn: Connection) -> Page[MessageSummary]:
            rows, more = _one_page(conn, search_statement(account_id, query), query.limit)
            by_message = _attempts_of(conn, [r["id"] for r in rows])
            items = [_message(r, by_message[r["id"]]) for r in rows]
            return Page(items, Position(items[-1].created_at, items[-1].id) if more else None)

        return await self.db.read(work)

    async def omnimessage(self, account_id: int | None, omnimessage_id: str
                          ) -> MessageHistory | None:
        def work(conn: Connection) -> MessageHistory | None:
            row = conn.execute(select(omnimessages).where(
                omnimessages.c.id == omnimessage_id,
                *([] if account_id is None else [omnimessages.c.account_id == account_id]),
            )).mappings().first()
            if row is None:
                return None
            owner = row["account_id"]
            message = _message(row, _attempts_of(conn, [omnimessage_id])[omnimessage_id])
            ids = [a.message_id for a in message.attempts]
            events = [StatusEvent(r["attempt_id"], r["status"], r["err"], r["source"],
                                  r["created_at"]) for r in conn.execute(
                select(status_events).where(status_events.c.attempt_id.in_(ids))
                .order_by(status_events.c.id)).mappings()] if ids else []
            reports = [_webhook(r) for r in conn.execute(select(webhooks).where(
                webhooks.c.order_key == omnimessage_id, webhooks.c.account_id == owner,
            ).order_by(webhooks.c.id)).mappings()]
            return MessageHistory(message, tuple(events), tuple(reports))

        return await self.db.read(work)

    async def inbound(self, account_id: int | None, query: InboundFilter) -> Page[InboundSummary]:
        def work(conn: Connection) -> Page[InboundSummary]:
            rows, more = _one_page(conn, inbound_statement(account_id, query), query.limit)
            callbacks = _latest_webhooks(conn, account_id, [r["id"] for r in rows])
            items = [InboundSummary(r["id"], r["channel"], r["sender"], r["recipient"], r["text"],
                                    r["received_at"], callbacks.get(r["id"])) for r in rows]
            return Page(items, Position(items[-1].received_at, items[-1].id) if more else None)

        return await self.db.read(work)


    async def webhooks(self, account_id: int | None, query: WebhookFilter) -> Page[WebhookSummary]:
        def work(conn: Connection) -> Page[WebhookSummary]:
            rows, more = _one_page(conn, webhook_statement(account_id, query), query.limit)
            items = [_webhook(r) for r in rows]
            return Page(items, Position(items[-1].created_at, str(items[-1].id)) if more else None)

        return await self.db.read(work)

    async def redeliver_one(self, account_id: int | None, webhook_id: int, now: datetime
                            ) -> WebhookSummary | None:
        """Put one finished callback back in the queue (a pending one stays as it is). None when
        the account has no such callback."""
        def work(conn: Connection) -> WebhookSummary | None:
            whose = [] if account_id is None else [webhooks.c.account_id == account_id]
            requeued = conn.execute(_requeue(now).where(
                webhooks.c.id == webhook_id, webhooks.c.state.in_(("done", "dead")), *whose,
            )).rowcount
            if requeued:
                self.db.notify(conn, "webhooks")
            row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id, *whose)
                               ).mappings().first()
            return None if row is None else _webhook(row)

        return await self.db.write(work)

    async def redeliver(self, account_id: int | None, which: Redelivery, now: datetime) -> list[int]:
        """Requeue the oldest matching finished callbacks, at most `which.limit`. They keep their
        ids, so the sender delivers them in their original order, one message's reports one at a
        time; the bodies are the stored bytes, signed again as they were."""
        def work(conn: Connection) -> list[int]:
            w = webhooks.c
            chosen = select(w.id).where(w.account_id == account_id, w.state.in_(which.states))
            if which.since is not None:
                chosen = chosen.where(w.created_at >= which.since)
            if which.until is not None:
                chosen = chosen.where(w.created_at < which.until)
            ids = list(conn.execute(chosen.order_by(w.id).limit(which.limit)).scalars())
            if ids:
                conn.execute(_requeue(now).where(w.id.in_(ids), w.state.in_(which.states)))
                self.db.notify(conn, "webhooks")
            return ids

        return await self.db.write(work)


def _requeue(now: datetime) -> Any:
    # A fresh start: the full retry schedule again, nothing left of the last outcome.
    return update(webhooks).values(state="pending", tries=0, next_try_at=now, lease_until=None,
                                   last_error=None, done_at=None)


def webhook_statement(account_id: int | None, query: WebhookFilter) -> Select[Any]:
    w = webhooks.c
    statement = select(webhooks).where(w.account_id == account_id)
    if query.state is not None:
        statement = statement.where(w.state == query.state)
    if query.since is not None:
        statement = statement.where(w.created_at >= query.since)
    if query.until is not None:
        statement = statement.where(w.created_at < query.until)
    if query.after is not None:
        statement = statement.where(w.id < int(query.after.id))
    return statement.order_by(w.id.desc()).limit(query.limit + 1)


def search_statement(account_id: int | None, query: MessageFilter) -> Select[Any]:
    """One page (plus one row, to know whether another page follows)."""
    om = omnimessages.c
    statement = select(omnimessages).where(om.account_id == account_id)
    if query.to is not None:
        statement = statement.where(om.to == query.to)
    if query.surface is not None:
        statement = statement.where(om.surface == query.surface)
    if query.since is not None:
        statement = statement.where(om.created_at >= query.since)
    if query.until is not None:
        statement = statement.where(om.created_at < query.until)
    if query.after is not None:
        statement = statement.where(tuple_(om.created_at, om.id)
                                    < tuple_(query.after.at, query.after.id))
    if query.channel is not None or query.status is not None:
        conditions = [attempts.c.omnimessage_id == om.id]
        if query.channel is not None:
            conditions.append(attempts.c.channel == query.channel)
        if query.status is not None:
            conditions.append(attempts.c.status == query.status)
        statement = statement.where(exists().where(and_(*conditions)))
    return statement.order_by(om.created_at.desc(), om.id.desc()).limit(query.limit + 1)


def inbound_statement(account_id: int | None, query: InboundFilter) -> Select[Any]:
    ib = inbound_messages.c
    statement = select(inbound_messages).where(ib.account_id == account_id)
    if query.sender is not None:
        statement = statement.where(ib.sender == query.sender)
    if query.recipient is not None:
        statement = statement.where(ib.recipient == query.recipient)
    if query.since is not None:
        statement = statement.where(ib.received_at >= query.since)
    if query.until is not None:
        statement = statement.where(ib.received_at < query.until)
    if query.after is not None:
        statement = statement.where(tuple_(ib.received_at, ib.id)
                                    < tuple_(query.after.at, query.after.id))
    return statement.order_by(ib.received_at.desc(), ib.id.desc()).limit(query.limit + 1)


def _one_page(conn: Connection, statement: Select[Any], limit: int
              ) -> tuple[Sequence[Any], bool]:
    """A page's rows, and whether another page follows: the statements ask for one row more."""
    rows = conn.execute(statement).mappings().all()
    return rows[:limit], len(rows) > limit


def _attempts_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[AttemptSummary]]:
    found: dict[str, list[AttemptSummary]] = {i: [] for i in ids}
    if not ids:
        return found
    for r in conn.execute(select(attempts).where(attempts.c.omnimessage_id.in_(list(ids)))
                          .order_by(attempts.c.omnimessage_id, attempts.c.seq)).mappings():
        found[r["omnimessage_id"]].append(AttemptSummary(
            message_id=r["id"], seq=r["seq"], channel=r["channel"], sender=r["sender"],
            state=r["state"], status=r["status"], err=r["err"], error=r["error"],
            parts_count=r["parts_count"], content=r["content"], due_at=r["due_at"],
            sent_at=r["sent_at"], updated_at=r["updated_at"]))
    return found


def _latest_webhooks(conn: Connection, account_id: int | None, keys: Sequence[str]
                     ) -> dict[str, WebhookSummary]:
    latest: dict[str, WebhookSummary] = {}
    if keys:
        for r in conn.execute(select(webhooks).where(
                webhooks.c.order_key.in_(list(keys)), webhooks.c.account_id == account_id,
        ).order_by(webhooks.c.id)).mappings():
            latest[r["order_key"]] = _webhook(r)
    return latest


def _message(row: Any, attempt_rows: list[AttemptSummary]) -> MessageSummary:
    return MessageSummary(
        id=row["id"], to=row["to"], surface=row["surface"], state=row["state"],
        priority=row["priority"], time_to_send=row["time_to_send"], text_store=row["text_store"],
        created_at=row["created_at"], updated_at=row["updated_at"], attempts=tuple(attempt_rows))


def _webhook(row: Any) -> WebhookSummary:
    return WebhookSummary(
        id=row["id"], order_key=row["order_key"], kind=row["kind"], url=row["url"],
        body=bytes(row["body"]), state=row["state"], tries=row["tries"],
        next_try_at=row["next_try_at"], last_error=row["last_error"],
        last_status=row["last_status"],
        created_at=row["created_at"], done_at=row["done_at"])
