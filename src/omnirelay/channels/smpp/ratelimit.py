"""A connector's submit rate: a configured limit (SMSCs sell binds by messages per second) and the
limit it learns from ESME_RTHROTTLED when the SMSC's cap is not configured or lower than configured.

Both are pure logic over a clock the caller passes in, so that they can be reasoned about (and tested)
without sleeping.
"""

from __future__ import annotations

import math
from collections import deque


class TokenBucket:
    """`rate` tokens a second, holding at most a tenth of a second's worth (at least one), so that a
    burst stays well under what an SMSC measuring over one second would count as too fast.

    It hands out send times rather than making callers wait in line (GCRA, the "virtual scheduling"
    form of a token bucket): `reserve` says when a submit may go, or None when that is later than the
    caller is prepared to wait, so a send can hand a part back instead of queueing without bound."""

    def __init__(self, rate: float) -> None:
        self._due = -math.inf  # when the next token would be free at an even pace
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        self._tolerance = (self.capacity - 1) / rate

    def reserve(self, now: float, latest: float = math.inf) -> float | None:
        due = max(self._due, now)
        at = max(now, due - self._tolerance)
        if at > latest:
            return None
        self._due = due + 1 / self.rate
        return at

    def backlog(self, now: float) -> float:
        """How long from `now` until a reservation would be granted at once again."""
        return max(0.0, self._due - self._tolerance - now)


class LearnedRate:
    """AIMD on the throttle signal. Unlimited until the SMSC throttles with at least a second of
    history behind it; then the rate becomes nine tenths of what the SMSC accepted in the second
    before (its cap, measured rather than guessed), grows by 2% a second while submits are accepted
    (probing for a cap that rose), and is cut again at a later throttle, at most once a second.

    A throttle within the first second tells a cap from sporadic refusals by nothing, so it only
    pauses. Throttled responses to submits sent before the last throttle began belong to that
    episode and change nothing (`throttled` says whether one began).

    When the SMSC accepted nothing in that second (it refuses everything for a while) the rate
    halves, down to `floor`; the first accepted submit afterwards brings it straight back to half the
    cap learned before, from where it doubles about every 0.7 s back up to nine tenths of it. So a
    long throttle costs about one refused probe per pause, and the link is busy again within a second
    or two of the SMSC's recovery."""

    BACKOFF = 0.9
    PROBE_GROWTH = 0.02  # per accepted submit: the rate grows by 2% of itself a second at full pace
    WINDOW = 1.0  # SMSCs meter per second

    def __init__(self, floor: float = 1.0) -> None:
        self.floor = floor
        self.rate: float | None = None  # None: no limit
        self.learned = 0.0
        self._started: float | None = None  # the first answer
        self._episode_at = -math.inf
        self._cut_at = -math.inf
        self._accepted: deque[float] = deque()

    def _accepted_within(self, now: float) -> int:
        accepted = self._accepted
        while accepted and accepted[0] <= now - self.WINDOW:
            accepted.popleft()
        return len(accepted)

    def accepted(self, now: float) -> None:
        if self._started is None:
            self._started = now
        self._accepted.append(now)
        self._accepted_within(now)
        rate = self.rate
        if rate is None:
            return
        if not self.learned:  # nothing was accepted in the second before the cut
            self.rate = rate + 1
            return
        target = self.learned * self.BACKOFF
        if rate < target / 2:
            rate = target / 2  # the SMSC is accepting again: go back to what it took before
        self.rate = min(rate + 1, target) if rate < target else rate + self.PROBE_GROWTH

    def throttled(self, now: float, sent_at: float) -> bool:
        """A throttle response to a submit sent at `sent_at`. True when it begins a new episode
        (the caller pauses), False when it belongs to the one under way."""
        if self._started is None:
            self._started = now
        if sent_at < self._episode_at:
            return False
        self._episode_at = now
        if now - self._started < self.WINDOW or now - self._cut_at < self.WINDOW:
            return True
        self._cut_at = now
        measured = self._accepted_within(now)
        if measured:
            self.learned = float(measured)
            self.rate = max(self.floor, measured * self.BACKOFF)
        else:
            self.rate = max(self.floor, (self.rate or self.learned or self.floor) / 2)
        return True
