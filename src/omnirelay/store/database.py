"""The connector: one SQLAlchemy engine, used from asyncio by running each unit of work in a thread.

The same Core statements run on SQLite (sqlite3) and PostgreSQL (psycopg 3). On SQLite, writes are
serialised in-process (SQLite has one writer; queueing here is cheaper than SQLITE_BUSY retries),
so SQLite serves one process; PostgreSQL serves any number of processes on any number of hosts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
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
            if not self._sqlite_write_lock.acquire(timeout=self.timeout):
                raise StoreUnavailable(f"the database stayed locked for {self.timeout:g} s")
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        result = work(conn)
                    except BaseException:
                        conn.rollback()
                        raise
                    conn.commit()
                    return result
            finally:
                self._sqlite_write_lock.release()
        with self.engine.begin() as conn:
            return work(conn)

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
        if not self.is_sqlite:
            conn.execute(_NOTIFY, {"topic": topic})

    def dispose(self) -> None:
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
