"""Waking workers when work arrives: an in-process event, fed by PostgreSQL LISTEN/NOTIFY when
several processes share the database, and on SQLite by datagrams from the API processes beside a
worker (`Database._signal`). Polling remains only as the safety net."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import psycopg

from omnirelay.store.database import NOTIFY_CHANNEL, Database
from omnirelay.store.transitions import Effects

log = logging.getLogger(__name__)


# What kind of work arrived; each loop subscribes to the one it serves, so that accepting a
# message does not send the webhook sender looking for callbacks that cannot exist.
ATTEMPTS = "attempts"  # attempts became due: the dispatcher
DEADLINES = "deadlines"  # an attempt got a deadline: expiry
WEBHOOKS = "webhooks"  # callbacks were queued or became claimable: the webhook sender
TOPICS = (ATTEMPTS, DEADLINES, WEBHOOKS)


class Wakeup:
    def __init__(self) -> None:
        self._events: dict[str, list[asyncio.Event]] = {topic: [] for topic in TOPICS}

    def subscribe(self, topic: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[topic].append(event)
        return event

    def wake(self, *topics: str) -> None:
        """Wake the subscribers of `topics`, or of every topic when none is named (work of an
        unknown kind, such as a NOTIFY from another process)."""
        for topic in topics or TOPICS:
            for event in self._events[topic]:
                event.set()


# NOTIFY payload -> the topics it wakes; an unknown or empty payload wakes every loop
_NOTIFIED = {"attempts": (ATTEMPTS, DEADLINES), "webhooks": (WEBHOOKS,)}


def wake_for(wakeup: Wakeup, effects: Effects) -> None:
    """Wake the loops a write gave work: a started variant is due and has a deadline."""
    if effects.attempts:
        wakeup.wake(ATTEMPTS, DEADLINES)
    if effects.webhooks:
        wakeup.wake(WEBHOOKS)


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
                async for notice in conn.notifies():
                    wakeup.wake(*_NOTIFIED.get(notice.payload, ()))
                    if stopping.is_set():
                        return
        except (psycopg.Error, OSError) as exc:
            log.warning("LISTEN connection lost (%s); polling until it is back", exc)
            await asyncio.sleep(1.0)


COALESCE_SECONDS = 0.01


async def listen_sqlite(db: Database, wakeup: Wakeup) -> None:
    """Wake the local loops for what other processes on this SQLite file committed. Only one
    process can listen on a file's address: the one running the workers (a second one, which the
    CLI refuses anyway, would fall back to polling)."""
    assert db.wake_address is not None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(db.wake_address)
    except OSError as exc:
        sock.close()
        log.warning("another process already listens for commits on this SQLite file (%s); "
                    "polling for work instead", exc)
        return await asyncio.Future()  # until stopped: returning would count as a failure
    sock.setblocking(False)
    db.wake_listening = True  # its own commits wake it in-process: no datagrams to itself
    loop = asyncio.get_running_loop()
    try:
        while True:
            topics = set((await loop.sock_recv(sock, 1024)).split(b","))
            # What else arrived while we were away joins this wake; then a pause, so that under
            # load the dispatcher claims what 10 ms of accepts committed rather than each alone.
            with contextlib.suppress(BlockingIOError):
                while True:
                    topics.update(sock.recv(1024).split(b","))
            for topic in topics:
                wakeup.wake(*_NOTIFIED.get(topic.decode(errors="replace"), ()))
            await asyncio.sleep(COALESCE_SECONDS)
    finally:
        db.wake_listening = False
        sock.close()
