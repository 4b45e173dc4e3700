"""Rate-limited log lines: a few per period, then one saying how many were left out.

For events an upstream can repeat by the thousand (receipts nobody sent, inbound to unknown
numbers): the first ones are worth reading, the rest only worth counting (their counter is in
/metrics).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogThrottle:
    def __init__(self, logger: logging.Logger, *, per: float = 60.0, burst: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.per = per
        self.burst = burst
        self.clock = clock
        self._window_start = -float("inf")
        self._logged = 0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = self.clock()
        if now - self._window_start >= self.per:
            if self._suppressed:
                self.logger.warning("... and %d more like it in the last %.0fs (not logged)",
                                    self._suppressed, now - self._window_start)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged < self.burst:
            self._logged += 1
            self.logger.warning(message, *args)
        else:
            self._suppressed += 1
