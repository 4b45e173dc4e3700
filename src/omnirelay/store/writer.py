"""One writer per process: every kind of write queues here, and a batch commits in one transaction.

Accepts, claims, send outcomes, receipts and their transitions, webhook claims and results,
inbound messages: each is an `Op`, and a call hands the writer one *submission* (some units of one
op). While a transaction is being written, new submissions queue; the next transaction takes
everything queued, so under load one commit (one fsync, one trip to the database thread) covers
many requests and many kinds of work, and under light load a submission commits alone with no
added wait. Submissions of a mergeable op are applied together, one statement per table for all of
them; the others (claims) run one by one inside the same transaction.

One unit's bad data cannot sink its batch. A transaction is first written straight through; when
the database refuses any part of it for its data (a constraint, a value out of range, a NUL on
PostgreSQL) rather than for being out of reach, it is rolled back and written again carefully:
each op's part in a SAVEPOINT, a refused part again submission by submission, and for ops whose
units stand alone, unit by unit. (Savepoints on every transaction cost about 5 % of the engine's
time under load; refusals are rare.) What is refused on
its own is returned to the caller, who resolves it by its rule; everything else commits. An
unreachable database fails the whole transaction: every waiter gets StoreUnavailable.

Durability follows the promise: a submission's future resolves after the COMMIT, so an API answers
201, or a channel acknowledges a deliver_sm, only for what is on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from omnirelay.metrics import Metrics
from omnirelay.store.database import Database, describe, unavailable

log = logging.getLogger(__name__)

U = TypeVar("U")
R = TypeVar("R")
C = TypeVar("C")

MAX_BATCH_UNITS = 5000


def log_refused(logger: logging.Logger, metrics: Metrics | None, kind: str, what: str,
                error: Exception, rule: str) -> None:
    """A unit the database refused on its own (`Written.refused`): said, with the rule its caller
    resolves it by, and counted by kind."""
    logger.error("the database refused %s (%s); %s", what, describe(error), rule)
    if metrics is not None:
        metrics.unit_failures.labels(kind).inc()


@dataclass(frozen=True, slots=True)
class Submission(Generic[U, C]):
    units: Sequence[U]
    context: C  # what the caller knew when it submitted: the time, the lease owner, ...


@dataclass(frozen=True, slots=True)
class Op(Generic[U, C, R]):
    """A kind of write. `run` applies submissions in the open transaction and returns one result
    per submission. `order` places it in a transaction (outcomes before the receipts that may
    match them). `merge`: may run all submissions at once; `isolated_units`: a refused submission
    is retried unit by unit (its units do not depend on each other)."""

    name: str
    order: int
    run: Callable[[Connection, Sequence[Submission[U, C]]], list[R]]
    merge: bool = True
    isolated_units: bool = False
    # how the results of units written one by one add up (Effects are or-ed); else the last
    combine: Callable[[R, R], R] | None = None


@dataclass(slots=True)
class Written(Generic[U, R]):
    """A submission's result, and the units the database refused on their own."""

    value: R | None
    refused: list[tuple[U, Exception]] = field(default_factory=list)


@dataclass(slots=True)
class _Pending:
    op: Op[Any, Any, Any]
    submission: Submission[Any, Any]
    future: asyncio.Future[Written[Any, Any]]


class Writer:
    def __init__(self, db: Database, max_batch_units: int = MAX_BATCH_UNITS) -> None:
        self.db = db
        self.max_batch_units = max_batch_units
        self._queue: deque[_Pending] = deque()
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, op: Op[U, C, R], units: Sequence[U], context: C) -> Written[U, R]:
        """Queue `units` and wait until they are committed. Raises StoreUnavailable when the
        database is out of reach, or the error a non-isolated submission was refused with."""
        loop = asyncio.get_running_loop()
        pending = _Pending(op, Submission(units, context), loop.create_future())
        self._queue.append(pending)
        if not self._draining:
            self._draining = True
            self._drainer = loop.create_task(self._drain())
        written: Written[U, R] = await pending.future
        return written

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    try:
                        results = await self.db.write(
                            lambda conn, taken=batch: self._write(conn, taken, careful=False))  # type: ignore[misc]
                    except _Refused:
                        results = await self.db.write(
                            lambda conn, taken=batch: self._write(conn, taken, careful=True))  # type: ignore[misc]
                except Exception as exc:
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    continue
                for pending, result in zip(batch, results, strict=True):
                    if pending.future.done():
                        continue
                    if isinstance(result, Exception):
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)
        finally:
            self._draining = False

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].submission.units)
                               <= self.max_batch_units):
            pending = self._queue.popleft()
            batch.append(pending)
            size += len(pending.submission.units)
        return batch

    # in the database thread ------------------------------------------------------------------

    def _write(self, conn: Connection, batch: list[_Pending], careful: bool
               ) -> list[Written[Any, Any] | Exception]:
        """Every op's part of the batch, in op order; one result per pending submission. Runs
        again whole when PostgreSQL makes the transaction lose a lock race. Not `careful`: any
        refusal raises _Refused, and the caller writes the batch again carefully."""
        results: dict[int, Written[Any, Any] | Exception] = {}
        by_op: dict[str, list[_Pending]] = {}
        for pending in batch:
            by_op.setdefault(pending.op.name, []).append(pending)
        for group in sorted(by_op.values(), key=lambda g: g[0].op.order):
            op = group[0].op
            for part in [group] if op.merge else [[pending] for pending in group]:
                if careful:
                    self._run_group(conn, op, part, results)
                else:
                    self._run_straight(conn, op, part, results)
        return [results[id(pending)] for pending in batch]

    def _run_straight(self, conn: Connection, op: Op[Any, Any, Any], group: list[_Pending],
                      results: dict[int, Written[Any, Any] | Exception]) -> None:
        submissions = [p.submission for p in group]
        try:
            values = self._checked(op, submissions, op.run(conn, submissions))
        except Exception as exc:
            if unavailable(exc):
                raise
            raise _Refused from exc
        for pending, value in zip(group, values, strict=True):
            results[id(pending)] = Written(value)

    def _run_group(self, conn: Connection, op: Op[Any, Any, Any], group: list[_Pending],
                   results: dict[int, Written[Any, Any] | Exception]) -> None:
        try:
            values = self._in_savepoint(conn, op, [p.submission for p in group])
        except Exception as exc:
            if unavailable(exc):
                raise
            if len(group) == 1:
                results[id(group[0])] = self._alone(conn, op, group[0], exc)
                return
            for pending in group:
                self._run_group(conn, op, [pending], results)
            return
        for pending, value in zip(group, values, strict=True):
            results[id(pending)] = Written(value)

    def _alone(self, conn: Connection, op: Op[Any, Any, Any], pending: _Pending,
               error: Exception) -> Written[Any, Any] | Exception:
        units = pending.submission.units
        if not op.isolated_units:
            return error
        if len(units) <= 1:
            return Written(None, [(unit, error) for unit in units])
        written: Written[Any, Any] = Written(None)
        for unit in units:
            try:
                values = self._in_savepoint(
                    conn, op, [Submission([unit], pending.submission.context)])
                if written.value is not None and op.combine is not None:
                    written.value = op.combine(written.value, values[0])
                else:
                    written.value = values[0]
            except Exception as exc:
                if unavailable(exc):
                    raise
                written.refused.append((unit, exc))
        return written

    @classmethod
    def _in_savepoint(cls, conn: Connection, op: Op[Any, Any, Any],
                      submissions: list[Submission[Any, Any]]) -> list[Any]:
        with conn.begin_nested():
            return cls._checked(op, submissions, op.run(conn, submissions))

    @staticmethod
    def _checked(op: Op[Any, Any, Any], submissions: list[Submission[Any, Any]],
                 values: list[Any]) -> list[Any]:
        if len(values) != len(submissions):
            raise AssertionError(f"{op.name} returned {len(values)} results for "
                                 f"{len(submissions)} submissions")
        return values


class _Refused(Exception):
    """Part of a batch written straight through was refused: write it again carefully."""

