"""Group commit: many concurrent requests share one transaction.

While one batch is being written, new submissions queue up; when the write finishes, the next
batch takes everything queued. Under light load each request commits alone (no added latency);
under heavy load one fsync covers hundreds of requests.

A batch the database refuses for one submission's data is written again one submission at a
time, so one request's bad data fails that request only, never the others that shared its
transaction (they may belong to other accounts). An unreachable database fails the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from omnirelay.store.database import unavailable

T = TypeVar("T")


class GroupCommitter(Generic[T]):
    def __init__(self, write: Callable[[Sequence[T]], Awaitable[None]],
                 max_batch: int = 1000) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[Sequence[T], asyncio.Future[None]]] = []
        self._draining = False

    async def submit(self, items: Sequence[T]) -> None:
        """Returns once every item is committed; raises what the write raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch: list[tuple[Sequence[T], asyncio.Future[None]]] = []
                size = 0
                while self._pending and (not batch or size + len(self._pending[0][0])
                                         <= self._max_batch):
                    entry = self._pending.pop(0)
                    batch.append(entry)
                    size += len(entry[0])
                try:
                    await self._write([item for items, _ in batch for item in items])
                except Exception as exc:
                    if len(batch) > 1 and not unavailable(exc):
                        await self._write_alone(batch)
                        continue
                    for _, future in batch:  # every waiter of the batch learns the write failed
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._draining = False

    async def _write_alone(self, batch: list[tuple[Sequence[T], asyncio.Future[None]]]) -> None:
        for items, future in batch:
            try:
                await self._write(items)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(None)
