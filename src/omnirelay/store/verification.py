"""Number verification's queries: creating a verification, and deciding a typed PIN.

Every statement is scoped by account. A typed PIN is decided in one transaction: the verification
and its destination's throttle are read, core.verification.decide says what to do, and the change
is applied by a conditional UPDATE that re-checks the limit itself (`wrong_pins < limit`,
`verified_at IS NULL`). On PostgreSQL a concurrent burst of guesses queues on the row's lock and
each UPDATE re-evaluates its condition on the row as the previous one left it, so no burst counts
past the limit or verifies twice; on SQLite writes are serialised anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from omnirelay.core.verification import (
    DESTINATION_WINDOW,
    DESTINATION_WRONG_PINS,
    MAX_WRONG_PINS,
    Answer,
    Decision,
    PinState,
    decide,
)
from omnirelay.store.database import Database
from omnirelay.store.tables import verification_sends, verification_throttles, verifications


@dataclass(frozen=True, slots=True)
class NewVerification:
    id: str
    account_id: int
    destination: str
    pin_hash: str
    cookie_hash: str | None
    ip: str | None
    created_at: datetime
    expires_at: datetime
    sends: Sequence[tuple[str, datetime]]  # (omnimessage id, when it is sent), first one first


@dataclass(frozen=True, slots=True)
class PinResult:
    answer: Answer
    # re-sends still scheduled, to cancel: the verification is over (verified or out of tries)
    cancel: list[str]


def _insert_missing(conn: Connection, table: Table, row: dict[str, object]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(**row).on_conflict_do_nothing())


class Verifications:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, new: NewVerification) -> None:
        def work(conn: Connection) -> None:
            conn.execute(verifications.insert().values(
                id=new.id, account_id=new.account_id, destination=new.destination,
                pin_hash=new.pin_hash, cookie_hash=new.cookie_hash, ip=new.ip, wrong_pins=0,
                created_at=new.created_at, expires_at=new.expires_at))
            conn.execute(verification_sends.insert(), [
                {"verification_id": new.id, "seq": seq, "omnimessage_id": omnimessage_id,
                 "send_at": at} for seq, (omnimessage_id, at) in enumerate(new.sends)])
            _insert_missing(conn, verification_throttles, {
                "account_id": new.account_id, "destination": new.destination,
                "window_started_at": new.created_at, "wrong_pins": 0})

        await self.db.write(work)

    async def remembered(self, account_id: int, destination: str, cookie_hash: str,
                         ip: str | None, since: datetime) -> bool:
        """Whether this cookie verified this destination since `since` (from the same IP
        address, when both requests name one)."""
        v = verifications.c
        query = select(v.id).where(
            v.account_id == account_id, v.destination == destination,
            v.cookie_hash == cookie_hash, v.verified_at.is_not(None), v.verified_at >= since)
        if ip is not None:
            query = query.where(or_(v.ip.is_(None), v.ip == ip))
        return await self.db.read(lambda conn: conn.execute(query.limit(1)).first() is not None)

    async def forget(self, account_id: int, verification_id: str) -> None:
        """Drop a verification whose PIN could not be sent (its messages were not accepted)."""
        await self.db.write(lambda conn: conn.execute(verifications.delete().where(
            verifications.c.id == verification_id, verifications.c.account_id == account_id)))

    async def check_pin(self, account_id: int, verification_id: str,
                        matches: Callable[[str], bool], now: datetime) -> PinResult | None:
        """Decide a typed PIN; None when the account has no such verification. `matches` tells
        whether the typed PIN hashes to the stored hash (in constant time).

        A first look outside any transaction settles what changes nothing (expired, spent, out
        of tries: states a verification never leaves), so a loop of guesses past the limit costs
        one read each; everything else is decided again, and applied, in one write."""
        settled = await self.db.read(
            lambda conn: _settled(conn, account_id, verification_id, matches, now))
        if settled is not None:
            return settled
        return await self.db.write(
            lambda conn: _check_pin(conn, account_id, verification_id, matches, now))


def _state(conn: Connection, account_id: int, verification_id: str, now: datetime
           ) -> tuple[Any, bool, PinState] | None:
    """The verification's row, its destination's throttle row, and what decide() needs."""
    v, t = verifications.c, verification_throttles.c
    joined = verifications.outerjoin(verification_throttles, and_(
        t.account_id == v.account_id, t.destination == v.destination))
    row = conn.execute(select(
        v.destination, v.pin_hash, v.wrong_pins, v.expires_at, v.verified_at,
        t.window_started_at, t.wrong_pins.label("destination_wrong_pins"),
    ).select_from(joined).where(v.id == verification_id, v.account_id == account_id)).first()
    if row is None:
        return None
    has_throttle = row.window_started_at is not None
    destination_wrong = (row.destination_wrong_pins if has_throttle
                         and row.window_started_at > now - DESTINATION_WINDOW else 0)
    return row, has_throttle, PinState(
        expires_at=row.expires_at, verified=row.verified_at is not None,
        wrong_pins=row.wrong_pins, destination_wrong_pins=destination_wrong)


def _settled(conn: Connection, account_id: int, verification_id: str,
             matches: Callable[[str], bool], now: datetime) -> PinResult | None:
    found = _state(conn, account_id, verification_id, now)
    if found is None:
        return None  # the write decides "not found" too: nothing is settled here
    row, _throttle, state = found
    decision, answer = decide(state, matches(row.pin_hash), now)
    return PinResult(answer, []) if decision is Decision.NOTHING else None


def _check_pin(conn: Connection, account_id: int, verification_id: str,
               matches: Callable[[str], bool], now: datetime) -> PinResult | None:
    v, t = verifications.c, verification_throttles.c
    found = _state(conn, account_id, verification_id, now)
    if found is None:
        return None
    row, has_throttle, state = found
    cutoff = now - DESTINATION_WINDOW
    decision, answer = decide(state, matches(row.pin_hash), now)
    still_open = and_(v.id == verification_id, v.verified_at.is_(None),
                      v.wrong_pins < MAX_WRONG_PINS)
    if decision is Decision.VERIFY:
        won = conn.execute(update(verifications).where(still_open, v.expires_at > now)
                           .values(verified_at=now)).rowcount
        if won != 1:  # a concurrent request verified it, or used its last try
            return PinResult(Answer.THROTTLED, [])
        return PinResult(Answer.VERIFIED, _pending_sends(conn, verification_id, now))
    if decision is Decision.COUNT_WRONG:
        counted = conn.execute(update(verifications).where(still_open)
                               .values(wrong_pins=v.wrong_pins + 1)).rowcount
        if counted != 1:
            return PinResult(Answer.THROTTLED, [])
        if not has_throttle:
            _insert_missing(conn, verification_throttles, {
                "account_id": account_id, "destination": row.destination,
                "window_started_at": now, "wrong_pins": 0})
        stale = t.window_started_at <= cutoff
        within = conn.execute(update(verification_throttles).where(
            t.account_id == account_id, t.destination == row.destination,
            or_(stale, t.wrong_pins < DESTINATION_WRONG_PINS),
        ).values(wrong_pins=case((stale, 1), else_=t.wrong_pins + 1),
                 window_started_at=case((stale, now), else_=t.window_started_at))).rowcount
        spent = row.wrong_pins + 1 >= MAX_WRONG_PINS
        cancel = _pending_sends(conn, verification_id, now) if spent else []
        return PinResult(Answer.INVALID if within == 1 else Answer.THROTTLED, cancel)
    return PinResult(answer, [])


def _pending_sends(conn: Connection, verification_id: str, now: datetime) -> list[str]:
    s = verification_sends.c
    return list(conn.execute(select(s.omnimessage_id).where(
        s.verification_id == verification_id, s.send_at > now).order_by(s.seq)).scalars())


def purge_batch(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to `limit` verifications that expired before `before`, oldest first, with their
    sends; and the destination throttles whose window started before it. Retention calls this
    with a cutoff past the longest a verification matters (a remembered cookie's 30 days)."""
    v = verifications.c
    ids = list(conn.execute(select(v.id).where(v.expires_at < before)
                            .order_by(v.expires_at).limit(limit)).scalars())
    t = verification_throttles.c
    conn.execute(delete(verification_throttles).where(t.window_started_at < before))
    if not ids:
        return 0
    # Explicitly, not by the foreign key's cascade: SQLite enforces it only where enabled.
    conn.execute(delete(verification_sends).where(verification_sends.c.verification_id.in_(ids)))
    return int(conn.execute(delete(verifications).where(v.id.in_(ids))).rowcount)
