"""Per-account rate limits as GCRA (the generic cell rate algorithm): a token bucket kept as one
number, the *theoretical arrival time* (TAT), so the whole state of a budget fits one column and
one atomic UPDATE can spend it.

An account allowed `rate` per second has a bucket of `rate` units (one second's worth) that
refills continuously. `backlog` is how far the TAT runs ahead of now: 0 is a full bucket, a full
second is an empty one. A request for `n` units needs min(n, rate) of them free now and is charged
all n: a bulk request larger than the bucket is admitted when the bucket is full and then holds the
account back for as long as its items are worth, so the rate is kept over time and no request is
too big to ever pass.

Times are integer microseconds, so sums are exact in Python and in SQL alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECOND_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Cost:
    """What a request of `count` units at `rate` per second is charged (`charge`, µs added to
    the TAT) and how much backlog it tolerates (`room`, µs)."""

    charge: int
    room: int


def cost(count: int, rate: int) -> Cost:
    interval = SECOND_US / rate
    needed = min(count, rate)
    return Cost(charge=max(1, round(count * interval)),
                room=max(0, SECOND_US - round(needed * interval)))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    tat: int  # the TAT after the decision (unchanged when refused)
    retry_after: int = 0  # whole seconds, at least 1, when refused


def decide(tat: int | None, now: int, count: int, rate: int) -> Decision:
    """Admit `count` units at `now` against a budget whose TAT is `tat` (None: never used)."""
    c = cost(count, rate)
    start = now if tat is None else max(tat, now)
    if start - now <= c.room:
        return Decision(True, start + c.charge)
    return Decision(False, start, retry_after_seconds(start - now - c.room))


def retry_after_seconds(wait_us: int) -> int:
    """Whole seconds for a Retry-After header: rounded up, never 0 (0 would invite a retry
    that is refused again)."""
    return max(1, math.ceil(wait_us / SECOND_US))


def slot(tat: int | None, now: int, rate: int, index: int) -> int:
    """When the `index`-th unit (from 0) beyond what a budget can give now may go, µs: how a
    held-back attempt is put off to its turn rather than claimed again at once."""
    start = now if tat is None else max(tat, now)
    return start - SECOND_US + round((index + 1) * SECOND_US / rate)
