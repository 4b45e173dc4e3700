"""The connector: one SQLAlchemy engine, used from asyncio by running each unit of work in a thread.

The same Core statements run on SQLite (sqlite3) and PostgreSQL (psycopg 3). On SQLite, writes are
serialised in-process (SQLite has one writer; queueing here is cheaper than SQLITE_BUSY retries);
between processes (an API process beside a worker) its write lock is waited for in short steps.
PostgreSQL serves any number of processes on any number of hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psycopg.errors
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

T = TypeVar("T")
log = logging.getLogger(__name__)

# Transactions that lost a lock race are rolled back whole and simply run again.
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
MAX_TRIES = 8

NOTIFY_CHANNEL = "omnirelay_work"

# How long a unit of work waits for the database by default: SQLite's busy timeout and the
# in-process writer lock, PostgreSQL's connect timeout and the pool checkout.
DEFAULT_TIMEOUT = 5.0


class StoreUnavailable(Exception):
    """The database could not be reached, or stayed locked past the timeout. The unit of work was
    rolled back (or, if the connection broke during COMMIT, its outcome is unknown); the caller
    answers 503 or tries again later."""


def unavailable(exc: BaseException) -> bool:
    """Errors that say the database is out of reach rather than that the data was refused."""
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeout | StoreUnavailable)


def sqlalchemy_url(database_url: str) -> str:
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url[len("postgresql://") :]
    return database_url


class Database:
    def __init__(self, database_url: str, *, pool_size: int = 8,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = database_url
        self.timeout = timeout
        url = sqlalchemy_url(database_url)
        self.is_sqlite = url.startswith("sqlite")
        self.wake_address: bytes | None = None
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url, pool_size=pool_size, max_overflow=0, pool_timeout=timeout,
                connect_args={"check_same_thread": False, "timeout": timeout},
                json_serializer=_json_dumps, json_deserializer=orjson.loads,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self.wake_address = wake_address(path) if path and path != ":memory:" else None
        else:
            connect_args: dict[str, Any] = {"connect_timeout": max(1, round(timeout))}
            if "application_name=" not in url:
                # So that an operator finds (or terminates) our sessions in pg_stat_activity.
                connect_args["application_name"] = "omnirelay"
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=4, pool_pre_ping=True,
                pool_timeout=timeout, connect_args=connect_args,
                json_serializer=_json_dumps, json_deserializer=orjson.loads,
            )
        # Threads block on the database, not the CPU, so a few more than the pool is right.
        self._executor = ThreadPoolExecutor(max_workers=pool_size + 4,
                                            thread_name_prefix="omnirelay-db")
        self._sqlite_write_lock = threading.Lock()
        # SQLite's NOTIFY: the topics of the open write transaction (guarded by the write lock),
        # signalled to a worker process after COMMIT unless this process is that worker.
        self._topics: set[str] = set()
        self._wake_socket: socket.socket | None = None
        self.wake_listening = False

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a read-only unit (autocommitted, no locks kept)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._run, work, False
        )

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction; committed when this returns."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._run, work, True
        )

    def run_sync(self, work: Callable[[Connection], T]) -> T:
        return self._run(work, True)

    def _run(self, work: Callable[[Connection], T], writes: bool) -> T:
        for attempt in range(1, MAX_TRIES + 1):
            try:
                return self._run_once(work, writes)
            except PoolTimeout as exc:
                raise StoreUnavailable(f"no database connection within {self.timeout:g} s") from exc
            except DBAPIError as exc:
                # psycopg files lost lock races under OperationalError too: test for them first.
                lost_race = isinstance(exc.orig, RETRYABLE)
                if not lost_race and unavailable(exc):
                    raise StoreUnavailable(describe(exc)) from exc
                if not lost_race or attempt == MAX_TRIES:
                    raise
                log.info("transaction lost a lock race (%s); running it again",
                         type(exc.orig).__name__)
                time.sleep(random.uniform(0.001, 0.02) * attempt)
        raise AssertionError("unreachable")

    def _run_once(self, work: Callable[[Connection], T], writes: bool) -> T:
        if writes and self.is_sqlite:
            # Bounded like SQLite's own busy wait: behind a lock held elsewhere, every queued
            # writer would otherwise wait its full busy timeout in turn.
            deadline = time.monotonic() + self.timeout
            if not self._sqlite_write_lock.acquire(timeout=self.timeout):
                raise StoreUnavailable(f"the database stayed locked for {self.timeout:g} s")
            try:
                with self.engine.connect() as conn:
                    self._begin_immediate(conn, deadline)
                    self._topics.clear()
                    try:
                        result = work(conn)
                    except BaseException:
                        conn.rollback()
                        raise
                    conn.commit()
                    if self._topics and not self.wake_listening:
                        self._signal(self._topics)
                    return result
            finally:
                self._sqlite_write_lock.release()
        with self.engine.begin() as conn:
            return work(conn)

    def _begin_immediate(self, conn: Connection, deadline: float) -> None:
        """Take SQLite's write lock, waiting for another process that holds it in steps of at
        most 2 ms. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, ... ms, so a
        writer behind a short transaction of another process (an API process beside a worker)
        slept on for up to 25 ms after the lock was free: at 1,500 accepts/s that was the p99."""
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA busy_timeout=0")
        try:
            pause = 0.0002
            while True:
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    return
                except OperationalError as exc:
                    if not _locked(exc):
                        raise
                    conn.rollback()
                    if time.monotonic() + pause > deadline:
                        raise StoreUnavailable(
                            f"the database stayed locked for {self.timeout:g} s") from exc
                    time.sleep(pause)
                    pause = min(pause * 2, 0.002)
        finally:
            driver.execute(f"PRAGMA busy_timeout={round(self.timeout * 1000)}")

    def ping(self, timeout: float = 1.0) -> None:
        """Prove the database can take a write now, within the timeout: a real query on
        PostgreSQL; on SQLite the write lock itself, which a reader's query would not need (WAL
        lets reads through while another process holds the lock)."""
        if self.is_sqlite:
            path = sqlalchemy_url(self.url).split("///", 1)[1]
            probe = sqlite3.connect(path or ":memory:", timeout=timeout, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreUnavailable(str(exc)) from exc
            finally:
                probe.close()
            return
        self._run(lambda conn: conn.execute(text("SELECT 1")).scalar_one(), False)

    def notify(self, conn: Connection, topic: str = "") -> None:
        """Tell other processes new work is due (PostgreSQL); delivered at commit. The payload
        names the kind of work ("attempts", "webhooks"), so that each process wakes only the
        loop that has some; PostgreSQL folds identical notifications of one transaction."""
        if self.is_sqlite:
            self._topics.add(topic)
        else:
            conn.execute(_NOTIFY, {"topic": topic})

    def _signal(self, topics: set[str]) -> None:
        """SQLite has no NOTIFY: tell a worker process on this database file, by a datagram to
        the socket it listens on (`engine.wakeup.listen_sqlite`), what kind of work was
        committed. Nobody listening (the usual single process) or a full queue (a worker that
        has not caught up is awake anyway) is no error."""
        if self.wake_address is None:
            return
        if self._wake_socket is None:
            self._wake_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._wake_socket.setblocking(False)
        with contextlib.suppress(OSError):
            self._wake_socket.sendto(",".join(sorted(topics)).encode(), self.wake_address)

    def dispose(self) -> None:
        if self._wake_socket is not None:
            self._wake_socket.close()
        self.engine.dispose()
        self._executor.shutdown(wait=False, cancel_futures=True)


_NOTIFY = text("SELECT pg_notify('" + NOTIFY_CHANNEL + "', :topic)")


def _json_dumps(value: Any) -> str:
    # orjson: JSON columns are written and read on every attempt; the stdlib's json was a
    # measurable share of each batch. The stdlib takes what orjson cannot (integers past 64 bits).
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


def describe(exc: BaseException) -> str:
    """The driver's message, first line only: PostgreSQL's carry hints and context below it, and
    SQLAlchemy appends the statement and its parameters (which can hold message text)."""
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    return (message.splitlines() or [type(orig or exc).__name__])[0][:200]


def wake_address(path: str) -> bytes | None:
    """The abstract Unix socket (Linux) through which processes sharing one SQLite file wake its
    worker: named after the file's real path, so it needs no file of its own and no clean-up.
    None elsewhere: the worker then polls every `engine.poll_interval`."""
    if not sys.platform.startswith("linux"):
        return None
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
    return b"\0omnirelay-wake-" + digest.encode()


def _locked(exc: OperationalError) -> bool:
    orig = exc.orig
    return isinstance(orig, sqlite3.OperationalError) and orig.sqlite_errorcode in (
        sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's implicit transaction handling would defeat BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a 201 means the message survives a power cut too, not only a process crash. Group
    # commit (see store.writer) keeps the fsync count low under load.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
