"""Waking workers when work arrives: an in-process event, fed by PostgreSQL LISTEN/NOTIFY when
several processes share the database. Polling remains only as the safety net."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from omnirelay.store.database import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Wakeup:
    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.append(event)
        return event

    def wake(self) -> None:
        for event in self._events:
            event.set()


async def wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep until woken or `seconds` pass, then re-arm."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=max(0.0, seconds))
    event.clear()


async def listen_postgres(dsn: str, wakeup: Wakeup, stopping: asyncio.Event) -> None:
    """Forward NOTIFYs to the local wakeup; reconnect if the connection drops."""
    while not stopping.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                async for _ in conn.notifies():
                    wakeup.wake()
                    if stopping.is_set():
                        return
        except (psycopg.Error, OSError) as exc:
            log.warning("LISTEN connection lost (%s); polling until it is back", exc)
            await asyncio.sleep(1.0)
