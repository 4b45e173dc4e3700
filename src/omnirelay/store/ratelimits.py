"""The shared budgets of rate-limited accounts (core.ratelimit): one row per account and kind in
rate_budgets, spent by atomic statements, so that every process on one PostgreSQL spends the same
budget. Accounts without a limit have no row and cost nothing here.

- accept: one conditional upsert per admitted request (`take_accept`), run by the API's limiter on
  PostgreSQL only (a single SQLite process keeps its budgets in memory);
- send: inside the claim's transaction (`hold_to_send_rates`), the attempts of a limited account
  beyond its budget are put back, due when their turn comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, select, text

from omnirelay.core import ratelimit
from omnirelay.store import statements as S
from omnirelay.store.tables import accounts

ACCEPT = "accept"
SEND = "send"
EPOCH = datetime(1970, 1, 1)


def to_us(moment: datetime) -> int:
    """A naive UTC datetime as microseconds since the epoch."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


# --- accept ------------------------------------------------------------------------------------

# The whole decision in one statement: the row is created full, or its TAT moves on only where the
# backlog leaves room; no row back means refused. The state is a throttle, not a promise: losing
# the last milliseconds of it in a crash admits a little early, so the commit does not wait for
# the WAL flush (synchronous_commit off for this transaction; the CTE makes it part of the
# statement rather than a second round trip).
_TAKE_ACCEPT = text(
    "WITH quiet AS (SELECT set_config('synchronous_commit', 'off', true) AS s) "
    "INSERT INTO rate_budgets (account_id, kind, tat_us) "
    "SELECT :account, 'accept', :now + :charge FROM quiet "
    "ON CONFLICT (account_id, kind) DO UPDATE "
    "SET tat_us = GREATEST(rate_budgets.tat_us, :now) + :charge "
    "WHERE GREATEST(rate_budgets.tat_us, :now) - :now <= :room "
    "RETURNING tat_us")
_ACCEPT_TAT = text("SELECT tat_us FROM rate_budgets WHERE account_id = :account AND kind = 'accept'")


def take_accept(conn: Connection, account_id: int, now: int, count: int, rate: int
                ) -> ratelimit.Decision:
    """Spend `count` units of the account's shared accept budget at `now` (µs), or refuse."""
    c = ratelimit.cost(count, rate)
    params = {"account": account_id, "now": now, "charge": c.charge, "room": c.room}
    tat = conn.execute(_TAKE_ACCEPT, params).scalar()
    if tat is not None:
        return ratelimit.Decision(True, int(tat))
    current = int(conn.execute(_ACCEPT_TAT, {"account": account_id}).scalar_one())
    return ratelimit.decide(current, now, count, rate)  # refused: the same sum, for Retry-After


# --- send --------------------------------------------------------------------------------------

class Claimed(Protocol):
    @property
    def message_id(self) -> str: ...
    @property
    def account_id(self) -> int: ...


_SEND_LIMITS = (select(accounts.c.id, accounts.c.max_send_rps)
                .where(accounts.c.id.in_(bindparam("ids", expanding=True)),
                       accounts.c.max_send_rps.is_not(None))
                .order_by(accounts.c.id))
# Locks the row (creating it full) and reads it: concurrent claimers of one account's attempts
# spend its budget one after the other. Rows are locked in account order, so two claims never
# wait on each other in a circle.
_LOCK_SEND = text(
    "INSERT INTO rate_budgets (account_id, kind, tat_us) VALUES (:account, 'send', 0) "
    "ON CONFLICT (account_id, kind) DO UPDATE SET tat_us = rate_budgets.tat_us "
    "RETURNING tat_us, horizon_us")
_SET_SEND = text("UPDATE rate_budgets SET tat_us = :tat, horizon_us = :horizon "
                 "WHERE account_id = :account AND kind = 'send'")


def hold_to_send_rates(conn: Connection, claimed: Sequence[Any], now: datetime
                       ) -> tuple[list[Any], list[Any]]:
    """Split a claim into what its accounts' send rates allow now and what they hold back. Each
    held-back attempt is due again at a turn of its own, one interval after the last turn handed
    out (the budget's horizon), so later claims queue behind it rather than on the same turns,
    and each attempt is put back about once; the claim does not count as a try. Costs one probe
    when no account in the claim is limited."""
    if not claimed:
        return list(claimed), []
    ids = sorted({c.account_id for c in claimed})
    limits = {int(r[0]): int(r[1]) for r in conn.execute(_SEND_LIMITS, {"ids": ids})}
    if not limits:
        return list(claimed), []
    now_us = to_us(now)
    kept = [c for c in claimed if c.account_id not in limits]
    held: list[tuple[Any, int]] = []
    for account_id in sorted(limits):
        rate = limits[account_id]
        mine = [c for c in claimed if c.account_id == account_id]
        tat, horizon = conn.execute(_LOCK_SEND, {"account": account_id}).one()
        granted, tat = take_up_to(int(tat), now_us, len(mine), rate)
        kept += mine[:granted]
        turns = held_turns(tat, horizon, now_us, rate, len(mine) - granted)
        held += zip(mine[granted:], turns, strict=True)
        conn.execute(_SET_SEND, {"account": account_id, "tat": tat,
                                 "horizon": turns[-1] if turns else horizon})
    if held:
        S.put_back_held.run(conn, [{"mid": c.message_id, "due": from_us(turn), "now": now}
                                   for c, turn in held])
    order = {id(c): i for i, c in enumerate(claimed)}
    kept.sort(key=lambda c: order[id(c)])  # as the claim ordered them
    return kept, [c for c, _ in held]


def held_turns(tat: int, horizon: int | None, now: int, rate: int, count: int) -> list[int]:
    """When each of `count` held-back attempts may go, µs: from the first moment the budget
    gives one more, or after the last turn already handed out, one interval apart."""
    first = ratelimit.slot(tat, now, rate, 0)
    if horizon is not None:
        first = max(first, horizon + round(ratelimit.SECOND_US / rate))
    return [first + round(i * ratelimit.SECOND_US / rate) for i in range(count)]


def take_up_to(tat: int, now: int, wanted: int, rate: int) -> tuple[int, int]:
    """As many of `wanted` single units as the budget gives now, and the TAT after them."""
    start = max(tat, now)
    free = ratelimit.SECOND_US - (start - now)
    granted = max(0, min(wanted, free * rate // ratelimit.SECOND_US))
    return granted, start + round(granted * ratelimit.SECOND_US / rate)


def fair_order(claimed: Sequence[Any]) -> list[Any]:
    """A claim in the order to hand it out: by priority, then round-robin across accounts (each
    account's first due attempt, then each one's second, ...), then by due time, as the claim
    chose them."""
    ordered = sorted(claimed, key=lambda c: (c.priority, c.due_at))
    turns: dict[tuple[int, int], int] = {}
    keyed: list[tuple[int, int, Any]] = []
    for position, c in enumerate(ordered):
        key = (c.account_id, c.priority)
        turns[key] = turns.get(key, 0) + 1
        keyed.append((turns[key], position, c))
    return [c for _turn, _position, c in sorted(keyed, key=lambda k: (k[2].priority, k[0], k[1]))]
