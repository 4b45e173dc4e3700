"""A token bucket for a connector's submit rate (SMSCs sell binds by messages per second)."""

from __future__ import annotations

import asyncio


class TokenBucket:
    """`rate` tokens a second, holding at most a tenth of a second's worth (at least one), so that a
    burst stays well under what an SMSC measuring over one second would count as too fast."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        self._tokens = self.capacity
        self._stamp = asyncio.get_running_loop().time()
        self._lock = asyncio.Lock()  # waiters queue in arrival order instead of racing each other

    async def acquire(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
