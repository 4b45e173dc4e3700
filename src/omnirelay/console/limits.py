"""A bound on failed console sign-ins per client address, so the sign-in form is no faster a way
to guess passwords than anything else: after `limit` failures within `window` seconds, the
address is refused (429) until the oldest of them is `window` old. Successes cost nothing."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque

LIMIT = 10  # failed sign-ins
WINDOW_SECONDS = 60.0
CAPACITY = 10_000  # addresses remembered; the least recently failing are forgotten first


class FailedSignIns:
    def __init__(self, limit: int = LIMIT, window: float = WINDOW_SECONDS,
                 capacity: int = CAPACITY) -> None:
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str, now: float | None = None) -> int:
        """0 when `address` may try; else whole seconds until it may."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            return 0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return 0
        if len(failures) < self.limit:
            return 0
        return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._failures.setdefault(address, deque(maxlen=self.limit))
        failures.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)
