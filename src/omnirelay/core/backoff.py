"""Retry delays for webhook deliveries: exponential, capped, with jitter so that a receiver that
comes back is not hit by every queued report at the same instant."""

from __future__ import annotations

import random


def retry_delay(
    tries: int, *, base: float, factor: float, cap: float, jitter: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next try, after `tries` failed ones (tries >= 1)."""
    delay = min(cap, base * factor ** max(0, tries - 1))
    spread = delay * jitter
    return max(0.0, delay + (rng or random).uniform(-spread, spread))
