"""What end users send us: inbound messages (with the webhooks that tell their account), the parts
of concatenated ones until they are whole, and the subscribers chat channels address by id."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from omnirelay.core.delivery import InboundFragment, InboundMessage
from omnirelay.core.logthrottle import LogThrottle
from omnirelay.core.reports import WebhookDraft
from omnirelay.metrics import Metrics
from omnirelay.store.accounts import Account, Accounts
from omnirelay.store.database import Database
from omnirelay.store.tables import inbound_fragments, inbound_messages, subscribers
from omnirelay.store.transitions import enqueue_webhooks
from omnirelay.store.writer import Op, Submission, Writer, log_refused

log = logging.getLogger(__name__)

# an inbound message's row and the webhooks it queues
InboundUnit = tuple[dict[str, Any], list[tuple[int, str, WebhookDraft]]]


class Inbox:
    def __init__(self, db: Database, writer: Writer, accounts: Accounts,
                 metrics: Metrics | None) -> None:
        self.db = db
        self.writer = writer
        self.accounts = accounts  # an inbound message belongs to the owner of its recipient
        self.metrics = metrics
        self._unowned_log = LogThrottle(log)
        self._inbound_op: Op[InboundUnit, datetime, None] = Op(
            "inbound", 3, self._store_inbound, isolated_units=True)

    # messages ------------------------------------------------------------------------------

    async def store_inbound(
        self, messages: Sequence[InboundMessage],
        build: Callable[[str, InboundMessage, Account], WebhookDraft | None], now: datetime,
    ) -> list[str]:
        """Store inbound messages and queue their webhooks; the account is the one owning the
        recipient number. Returns the new message ids."""
        owners = await self.accounts.owners(list({m.recipient for m in messages}))
        ids: list[str] = []
        rows: list[dict[str, Any]] = []
        drafts: list[tuple[int, str, WebhookDraft]] = []
        for message in messages:
            message_id = str(uuid.uuid4())
            ids.append(message_id)
            account = owners.get(message.recipient)
            rows.append({"id": message_id, "account_id": account.id if account else None,
                         "channel": message.channel, "sender": message.sender,
                         "recipient": message.recipient, "text": message.text,
                         "received_at": message.received_at})
            if account is not None:
                draft = build(message_id, message, account)
                if draft is not None:
                    drafts.append((account.id, message_id, draft))

        units = [(row, [d for d in drafts if d[1] == row["id"]]) for row in rows]
        written = await self.writer.submit(self._inbound_op, units, now)
        refused = {row["id"] for (row, _), _error in written.refused}
        for (row, _), error in written.refused:
            log_refused(log, self.metrics, "inbound",
                        f"inbound message {row['id']} on {row['channel']}", error, "dropping it")
        for row in rows:
            if row["account_id"] is None and row["id"] not in refused:
                # kept, without an account: the operator sees it; nobody else is told
                self._unowned_log.warning(
                    "inbound %s message %s from %s to %s: no account owns that number; stored "
                    "without an account", row["channel"], row["id"], row["sender"],
                    row["recipient"])
                if self.metrics is not None:
                    self.metrics.unowned_inbound.labels(row["channel"]).inc()
        return ids

    def _store_inbound(self, conn: Connection,
                       submissions: Sequence[Submission[InboundUnit, datetime]]) -> list[None]:
        conn.execute(insert(inbound_messages), [row for s in submissions for row, _ in s.units])
        for submission in submissions:
            queued = [draft for _, unit_drafts in submission.units for draft in unit_drafts]
            if queued:
                enqueue_webhooks(conn, queued, submission.context)
                self.db.notify(conn, "webhooks")
        return [None] * len(submissions)

    async def add_fragments(self, fragments: Sequence[InboundFragment]) -> list[InboundMessage]:
        """Keep parts of concatenated messages; return the messages that are now complete."""
        def work(conn: Connection) -> list[InboundMessage]:
            conn.execute(insert(inbound_fragments), [
                {"group_key": _group_key(f), "total": f.total, "seq": f.seq, "text": f.text,
                 "received_at": f.received_at} for f in fragments])
            complete: list[InboundMessage] = []
            for fragment in {_group_key(f): f for f in fragments}.values():
                key = _group_key(fragment)
                parts = conn.execute(select(inbound_fragments.c.seq, inbound_fragments.c.text)
                                     .where(inbound_fragments.c.group_key == key)
                                     .order_by(inbound_fragments.c.seq)).all()
                by_seq = {seq: text for seq, text in parts}
                if len(by_seq) >= fragment.total:
                    conn.execute(delete(inbound_fragments)
                                 .where(inbound_fragments.c.group_key == key))
                    complete.append(InboundMessage(
                        fragment.channel, fragment.sender, fragment.recipient,
                        "".join(by_seq[s] for s in sorted(by_seq)), fragment.received_at))
            return complete

        return await self.db.write(work)

    async def take_stale_fragments(self, before: datetime) -> list[InboundMessage]:
        """Groups whose siblings never came: joined from what arrived, rather than lost."""
        def work(conn: Connection) -> list[InboundMessage]:
            keys = list(conn.execute(select(inbound_fragments.c.group_key)
                                     .group_by(inbound_fragments.c.group_key)
                                     .having(func.max(inbound_fragments.c.received_at) < before))
                        .scalars())
            messages: list[InboundMessage] = []
            for key in keys:
                parts = conn.execute(select(inbound_fragments.c.seq, inbound_fragments.c.text,
                                            inbound_fragments.c.received_at)
                                     .where(inbound_fragments.c.group_key == key)
                                     .order_by(inbound_fragments.c.seq)).all()
                conn.execute(delete(inbound_fragments).where(inbound_fragments.c.group_key == key))
                channel, sender, recipient = json.loads(key)[:3]
                messages.append(InboundMessage(channel, sender, recipient,
                                               "".join(p[1] for p in parts), parts[0][2]))
            return messages

        return await self.db.write(work)

    # subscribers ---------------------------------------------------------------------------

    async def remember_subscriber(self, provider: str, phone: str, address: str,
                                  now: datetime) -> None:
        def work(conn: Connection) -> None:
            changed = conn.execute(update(subscribers).where(
                subscribers.c.provider == provider, subscribers.c.phone == phone,
            ).values(address=address, updated_at=now)).rowcount
            if not changed:
                conn.execute(insert(subscribers).values(provider=provider, phone=phone,
                                                        address=address, updated_at=now))

        await self.db.write(work)

    async def lookup_subscribers(self, provider: str, phones: Sequence[str]) -> dict[str, str]:
        def work(conn: Connection) -> dict[str, str]:
            rows = conn.execute(select(subscribers.c.phone, subscribers.c.address).where(
                subscribers.c.provider == provider, subscribers.c.phone.in_(list(phones))))
            return {r[0]: r[1] for r in rows}

        return await self.db.read(work)


def _group_key(fragment: InboundFragment) -> str:
    return json.dumps([fragment.channel, fragment.sender, fragment.recipient, fragment.group_key,
                       fragment.total])
