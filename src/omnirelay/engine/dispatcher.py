"""The dispatcher: claim due attempts, hand them to their channel, record what happened.

Several batches are in flight at once so that a slow upstream does not hold up the claim loop;
each channel's part of a batch is recorded as soon as that channel answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from omnirelay.channels.base import Channel
from omnirelay.config import EngineSettings
from omnirelay.core.delivery import OutboundMessage, SendResult
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.wakeup import ATTEMPTS, Wakeup, wait, wake_for
from omnirelay.metrics import Metrics
from omnirelay.store.database import StoreUnavailable
from omnirelay.store.queries import Store

log = logging.getLogger(__name__)

UPSTREAM_ERROR_RETRY = 5.0


class Dispatcher:
    def __init__(self, store: Store, channels: Mapping[str, Channel], settings: EngineSettings,
                 worker_id: str, wakeup: Wakeup, metrics: Metrics | None = None,
                 max_in_flight: int = 4) -> None:
        self.store = store
        self.wakeup = wakeup
        self.channels = channels  # channel name -> the upstream serving it
        self.settings = settings
        self.worker_id = worker_id
        self.wake = wakeup.subscribe(ATTEMPTS)
        self.metrics = metrics or Metrics()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim and hand out batches until `stopping` is set. A database error propagates to the
        supervisor, which restarts this loop; batches already handed out carry on."""
        while not stopping.is_set():
            await self._slots.acquire()
            try:
                claim = await self.store.claim_due(
                    self.worker_id, self.settings.batch_size, self.settings.lease_seconds,
                    utcnow(), channels=list(self.channels))
            except BaseException:
                self._slots.release()
                raise
            wake_for(self.wakeup, claim.effects)  # blacklisted attempts ended: reports, next variants
            claimed = claim.attempts
            if not claimed:
                self._slots.release()
                await wait(self.wake, await self._idle_for())
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(claimed))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
            if len(claimed) < self.settings.batch_size and self.settings.claim_linger:
                # Whatever falls due meanwhile waits for the next claim (see claim_linger).
                await asyncio.sleep(self.settings.claim_linger)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            # Its attempts stay leased and are sent again when the lease runs out.
            log.error("a dispatch batch failed", exc_info=task.exception())

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _idle_for(self) -> float:
        """Until the next scheduled attempt falls due, at most the poll interval."""
        nearest = await self.store.next_due_time()
        if nearest is None:
            return self.settings.poll_interval
        return min(self.settings.poll_interval, max(0.0, (nearest - utcnow()).total_seconds()))

    async def _deliver(self, claimed: list[OutboundMessage]) -> None:
        groups: dict[int, tuple[Channel, list[OutboundMessage]]] = {}
        for attempt in claimed:
            channel = self.channels[attempt.channel]
            groups.setdefault(id(channel), (channel, []))[1].append(attempt)
        await asyncio.gather(*(self._deliver_group(ch, items) for ch, items in groups.values()))

    async def _deliver_group(self, channel: Channel, items: list[OutboundMessage]) -> None:
        submitted_at = utcnow()
        try:
            with self.metrics.send_seconds.labels(channel.name).time():
                results = await channel.send(items)
        except Exception:
            log.exception("upstream %s failed on a batch of %d; requeued", channel.name,
                          len(items))
            results = [SendResult(m.message_id, retry_after=UPSTREAM_ERROR_RETRY)
                       for m in items]
        outcomes = _outcomes(items, results)
        for attempt, outcome in zip(items, outcomes, strict=True):
            kind = ("retry" if outcome.retry_after is not None
                    else outcome.status.lower() if outcome.status else "accepted")
            self.metrics.sent.labels(attempt.channel, kind).inc()
        channel_of = {a.message_id: a.channel for a in items}
        await self._record(outcomes, channel_of, submitted_at)

    async def _record(self, outcomes: list[SendResult], channel_of: dict[str, str],
                      submitted_at: datetime) -> None:
        """Record what the upstream said; while the database is out of reach, keep trying for as
        long as the lease holds, since these messages have left and must not be sent again."""
        give_up_at = asyncio.get_running_loop().time() + self.settings.lease_seconds
        pause = 0.2
        while True:
            try:
                effects = await self.store.record_send_outcomes(
                    self.worker_id, outcomes, channel_of, utcnow(), submitted_at)
                wake_for(self.wakeup, effects)
                return
            except StoreUnavailable as exc:
                if asyncio.get_running_loop().time() + pause > give_up_at:
                    # The lease runs out and the attempts are claimed again: sent twice rather
                    # than lost.
                    log.error("recording %d send outcomes failed until their lease ran out "
                              "(%s); they will be sent again", len(outcomes), exc)
                    return
                log.warning("recording %d send outcomes failed (%s); retrying in %.1f s",
                            len(outcomes), exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)


def _outcomes(items: Sequence[OutboundMessage], results: Sequence[SendResult]) -> list[SendResult]:
    """One result per claimed attempt, in the claim's order; one the upstream left out failed."""
    by_id = {r.message_id: r for r in results}
    outcomes: list[SendResult] = []
    for attempt in items:
        result = by_id.get(attempt.message_id)
        if result is None:
            log.error("upstream gave no result for %s; marking it failed", attempt.message_id)
            result = SendResult(attempt.message_id, status=Status.FAILED, err=Err.TEMPORARY)
        outcomes.append(result)
    return outcomes
