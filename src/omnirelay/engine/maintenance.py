"""Timed duties: expire attempts past their validity, recover work of dead workers, re-match
parked receipts, flush inbound fragments that timed out, purge what retention lets go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from omnirelay.config import EngineSettings
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.sink import EngineSink
from omnirelay.engine.wakeup import ATTEMPTS, DEADLINES, Wakeup, wait
from omnirelay.metrics import Metrics
from omnirelay.store.queries import Store
from omnirelay.store.retention import Retention

log = logging.getLogger(__name__)

# After being woken, expiry waits this long before looking again, so that a busy accept path
# costs one read per tick rather than one per wake-up; deadlines fire within this of their time.
EXPIRY_TICK = 0.25


class Maintenance:
    def __init__(self, store: Store, sink: EngineSink, settings: EngineSettings,
                 worker_id: str, wakeup: Wakeup, retention: Retention | None = None,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.retention = retention
        self.metrics = metrics
        self.sink = sink
        self.settings = settings
        self.worker_id = worker_id
        self.wakeup = wakeup
        self._new_deadlines = wakeup.subscribe(DEADLINES)

    async def run_expiry(self, stopping: asyncio.Event) -> None:
        """Sleep until the nearest deadline, or until new work may have brought a nearer one;
        a failure propagates to the supervisor, which restarts the loop."""
        while not stopping.is_set():
            nearest = await self.store.next_deadline()
            now = utcnow()
            if nearest is not None and nearest <= now:
                if await self.store.expire_attempts(now):
                    self.wakeup.wake()
                    continue
                # Due but locked by another worker's expiry pass: let that one finish.
                await asyncio.sleep(EXPIRY_TICK)
                continue
            # The safety net is engine.poll_interval, as for the dispatcher: a read, not a write
            # transaction, and a wake-up that went missing costs at most that much lateness.
            safety_net = self.settings.poll_interval
            delay = safety_net if nearest is None else (nearest - now).total_seconds()
            await wait(self._new_deadlines, min(delay, safety_net))
            if not stopping.is_set():
                await asyncio.sleep(EXPIRY_TICK)

    async def run_housekeeping(self, stopping: asyncio.Event) -> None:
        period = self.settings.heartbeat_seconds
        while not stopping.is_set():
            await self.housekeeping_pass()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=period)

    async def housekeeping_pass(self) -> None:
        now = utcnow()
        stale = now - timedelta(seconds=3 * self.settings.heartbeat_seconds)
        dead = await self.store.heartbeat(self.worker_id, now, stale)
        for worker in dead:
            log.warning("worker %s missed %d heartbeats; releasing its leases", worker, 3)
        released = await self.store.release_expired_leases(now, dead)
        for owner, (why, count) in sorted(released.items()):
            log.warning("requeued %d attempts leased by worker %s (%s)%s", count, owner, why,
                        " — this worker, alive but slower than engine.lease_seconds"
                        if owner == self.worker_id else "")
        if released:
            self.wakeup.wake(ATTEMPTS)
        if await self.store.rematch_unmatched(now):  # and drops those past the match window
            self.wakeup.wake()
        await self.store.purge_provider_refs(
            now - timedelta(seconds=self.settings.provider_ref_keep_seconds))
        stale_fragments = await self.store.take_stale_fragments(
            now - timedelta(seconds=self.settings.fragment_timeout_seconds))
        if stale_fragments:
            await self.sink.store_inbound(stale_fragments)
        if self.retention is not None:
            purged = await self.retention.purge(now)
            if self.metrics is not None:
                for kind in ("omnimessages", "inbound", "webhooks", "idempotency_keys",
                             "verifications"):
                    self.metrics.retention_purged.labels(kind).inc(getattr(purged, kind))
