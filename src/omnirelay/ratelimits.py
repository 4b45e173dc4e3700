"""The accept limit: how many omnimessages per second an account may have accepted
(`omnirelay account set NAME --max-rps N`), on every surface alike. A bulk request counts each
omnimessage it would store; a refused request stores nothing and is answered 429 with a
Retry-After.

Where the budget lives follows the database:
- SQLite serves one API process (alone or beside one worker), so the budget is this process's own,
  in memory: no database work.
- PostgreSQL serves many processes, and they must share one budget, or N processes would admit N
  times the rate. Each admitted request of a limited account spends it with one conditional upsert
  of the account's row (store.ratelimits.take_accept), which is exact, needs no coordination
  between processes, and does not wait for a WAL flush. Refusals are mostly free: the TAT only
  moves forward, so while the last one this process saw says the budget is spent, it refuses
  without asking. A flood above the limit thus costs the database no more than about the limit
  itself. (Handing each process slices of the budget would save the upsert but waste what a
  process reserved and did not use, and admit in bursts.)

Accounts without a limit (the default) cost one attribute test. The clock is injectable, in
microseconds since the epoch, so tests move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from omnirelay.core import ratelimit
from omnirelay.store.database import Database
from omnirelay.store.queries import Account
from omnirelay.store.ratelimits import take_accept


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class AcceptLimiter:
    def __init__(self, db: Database, clock: Callable[[], int] = wall_clock_us) -> None:
        self.db = db
        self.clock = clock
        self.shared = not db.is_sqlite
        # account id -> (its rate, the TAT last seen): the whole budget on SQLite, what this
        # process last learned of the shared one on PostgreSQL
        self._tats: dict[int, tuple[int, int]] = {}

    async def admit(self, account: Account, count: int = 1) -> int | None:
        """None when `count` omnimessages of `account` may be accepted now (and they are
        counted), else the seconds to wait before trying again."""
        rate = account.max_rps
        if rate is None or count <= 0:
            return None
        now = self.clock()
        known = self._tats.get(account.id)
        tat = known[1] if known is not None and known[0] == rate else None  # a new rate: afresh
        decision = ratelimit.decide(tat, now, count, rate)
        if decision.allowed and self.shared:
            decision = await self.db.write(
                lambda conn: take_accept(conn, account.id, now, count, rate))
        self._tats[account.id] = (rate, decision.tat)
        return None if decision.allowed else decision.retry_after
