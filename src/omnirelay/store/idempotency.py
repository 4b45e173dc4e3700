"""Idempotency keys in the store: the answers remembered per (account, key), and their purge.

A key is written by the accept that it answers for, in the same transaction (Store's
`insert_omnimessages` with `remember=`), so no crash can leave messages without their key or a
key without its messages. The primary key (account_id, key) settles races between processes: the
second insert waits for the first transaction and is refused once it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, delete, insert, select, tuple_

from omnirelay.store.tables import idempotency_keys

K = idempotency_keys.c


@dataclass(frozen=True, slots=True)
class Remembered:
    """The first answer given under a key."""

    fingerprint: str
    status: int
    body: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key to store with the accept it answers for. A row older than `expired_before` is past
    its window: it no longer counts, and this one takes its place."""

    account_id: int
    key: str
    fingerprint: str
    status: int
    body: bytes
    expired_before: datetime


class KeyTaken(Exception):
    """Another request (in another process) stored this key first; nothing of ours was stored.
    `found` is the answer it stored."""

    def __init__(self, key: str, found: Remembered) -> None:
        super().__init__(key)
        self.found = found


def lookup(conn: Connection, account_id: int, key: str, since: datetime) -> Remembered | None:
    row = conn.execute(select(K.fingerprint, K.status, K.body, K.created_at).where(
        K.account_id == account_id, K.key == key, K.created_at >= since)).first()
    if row is None:
        return None
    return Remembered(row.fingerprint, row.status, bytes(row.body), row.created_at)


def remember(conn: Connection, records: Sequence[tuple[KeyRecord, datetime]]) -> None:
    """Store keys (each with its accept's time) in the open transaction."""
    for record, _now in records:
        conn.execute(delete(idempotency_keys).where(
            K.account_id == record.account_id, K.key == record.key,
            K.created_at < record.expired_before))
    if records:
        conn.execute(insert(idempotency_keys), [
            {"account_id": r.account_id, "key": r.key, "fingerprint": r.fingerprint,
             "status": r.status, "body": r.body, "created_at": now} for r, now in records])


def purge_batch(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to `limit` keys created before `before`, oldest first."""
    found = conn.execute(select(K.account_id, K.key).where(K.created_at < before)
                         .order_by(K.created_at).limit(limit)).all()
    if not found:
        return 0
    return int(conn.execute(delete(idempotency_keys).where(and_(
        K.created_at < before,
        tuple_(K.account_id, K.key).in_([(row.account_id, row.key) for row in found])))
    ).rowcount)
