"""Timed duties: expire attempts past their validity, recover work of dead workers, re-match
parked receipts, flush inbound fragments that timed out, prune delivered webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from omnirelay.config import EngineSettings
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.sink import EngineSink
from omnirelay.engine.wakeup import Wakeup
from omnirelay.store.queries import Store

log = logging.getLogger(__name__)

EXPIRY_TICK = 0.25  # expiry fires within this of the deadline
UNMATCHED_KEEP = timedelta(days=3)
WEBHOOK_KEEP = timedelta(days=1)


class Maintenance:
    def __init__(self, store: Store, sink: EngineSink, settings: EngineSettings,
                 worker_id: str, wakeup: Wakeup) -> None:
        self.store = store
        self.sink = sink
        self.settings = settings
        self.worker_id = worker_id
        self.wakeup = wakeup

    async def run_expiry(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                expired = await self.store.expire_attempts(utcnow())
                if expired:
                    self.wakeup.wake()
                    continue
            except Exception:
                log.exception("expiry pass failed")
            await asyncio.sleep(EXPIRY_TICK)

    async def run_housekeeping(self, stopping: asyncio.Event) -> None:
        period = self.settings.heartbeat_seconds
        while not stopping.is_set():
            try:
                await self.housekeeping_pass()
            except Exception:
                log.exception("housekeeping pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=period)

    async def housekeeping_pass(self) -> None:
        now = utcnow()
        stale = now - timedelta(seconds=3 * self.settings.heartbeat_seconds)
        dead = await self.store.heartbeat(self.worker_id, now, stale)
        released = await self.store.release_expired_leases(now, dead)
        if released:
            log.warning("requeued %d attempts leased by workers that stopped", released)
            self.wakeup.wake()
        await self.store.rematch_unmatched(now, now - UNMATCHED_KEEP)
        stale_fragments = await self.store.take_stale_fragments(
            now - timedelta(seconds=self.settings.fragment_timeout_seconds))
        if stale_fragments:
            await self.sink.store_inbound(stale_fragments)
        await self.store.purge_finished_webhooks(now - WEBHOOK_KEEP)
