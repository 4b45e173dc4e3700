"""The hot statements, built once at import and named, like procrastinate's queries.

Building a Core statement and its cache key is most of its cost when it is rebuilt on every call
(the claim's UPDATE ... RETURNING: 774 µs built each call, 81 µs prebuilt, on this machine), so the
statements the engine runs per batch are built here with `bindparam` for every value, lists as
expanding parameters, and run as they are. Statements that run rarely (accounts, admin, reads for
the API) stay beside their code in the store's aggregates (store.accounts, store.dispatch, ...),
where they read better.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.sql import ColumnElement

from omnirelay.store.tables import (
    accounts,
    attempts,
    omnimessages,
    phonebook_blacklist,
    provider_refs,
    status_events,
    unmatched_reports,
    webhooks,
)


class Raw:
    """A statement for the busiest batched writes, handed to the driver as it is: SQLAlchemy's
    per-row parameter processing was the largest share of the writer's time. Written once with
    `:name` parameters; PostgreSQL gets them as `%(name)s`, JSON parameters cast to json.
    Parameters named in `times` are datetimes (naive UTC), in `json` JSON values (None is NULL);
    they are converted here the way SQLAlchemy's types store them, so both paths read alike."""

    def __init__(self, sql: str, *, times: Iterable[str] = (), json: Iterable[str] = (),
                 batched: str | None = None, types: dict[str, str] | None = None,
                 key: Sequence[str] = ()) -> None:
        self.times = tuple(times)
        self.json = tuple(json)
        self.sqlite = sql
        self.postgresql = _PARAM.sub(
            lambda m: f"CAST(%({m[1]})s AS json)" if m[1] in self.json else f"%({m[1]})s", sql)
        # PostgreSQL runs executemany as one statement per row (pipelined, but each planned and
        # executed on its own: 500 rows took 20 ms). `batched` is the same write for every row at
        # once, its `:name`s standing for arrays of the rows' values, of the element `types`
        # (`UPDATE ... FROM unnest(...)`); rows are first made unique by `key`, the last kept,
        # as executemany would leave them.
        self.types = types or {}
        self.key = tuple(key)
        self.batched = None if batched is None else _PARAM.sub(
            lambda m: f"CAST(%({m[1]})s AS {self.types[m[1]]}[])", batched)

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite and self.batched is not None:
            if self.key:
                rows = list({tuple(row[k] for k in self.key): row for row in rows}.values())
            conn.exec_driver_sql(self.batched, {
                name: [row[name] for row in rows] for name in self.types})
            return
        if self.times or self.json:
            rows = [self._convert(dict(row), sqlite) for row in rows]
        conn.exec_driver_sql(self.sqlite if sqlite else self.postgresql, list(rows))

    def _convert(self, row: dict[str, Any], sqlite: bool) -> dict[str, Any]:
        for name in self.json:
            value = row[name]
            row[name] = None if value is None else orjson.dumps(value).decode()
        if sqlite:
            for name in self.times:
                row[name] = sqlite_time(row[name])
        return row


_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def sqlite_time(value: datetime | None) -> str | None:
    """As SQLAlchemy stores a DateTime on SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff', naive UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def batch_update(table: Table, *, values: dict[str, str], match: dict[str, str],
                 types: dict[str, str], fixed: str = "", guard: str = "",
                 times: Iterable[str] = ()) -> Raw:
    """UPDATE `table` SET column = :param for each of `values` (and the literal `fixed`
    assignments) WHERE column = :param for each of `match` (and the literal `guard`): row by row
    on SQLite, and on PostgreSQL for the whole batch at once, from unnested arrays of the
    parameters' element `types`, the rows first made unique by `match`. `guard` may name the
    table's columns but not the parameters (the batched form's `v` has a column per parameter)."""
    if set(types) != set(values.values()) | set(match.values()):
        raise ValueError(f"types must name exactly the parameters of the {table.name} update")
    for column in (*values, *match):
        table.c[column]  # KeyError for a typo

    def statement(target: str, param: str) -> tuple[str, str]:
        sets = [f"{c} = {param}{p}" for c, p in values.items()] + ([fixed] if fixed else [])
        wheres = [f"{target}{c} = {param}{p}" for c, p in match.items()]
        return f"SET {', '.join(sets)}", " AND ".join(wheres + ([guard] if guard else []))

    sets, wheres = statement("", ":")
    batched_sets, batched_wheres = statement("t.", "v.")
    names = list(types)
    # the names are the schema's own (tables.py) and this module's, never input
    return Raw(f"UPDATE {table.name} {sets} WHERE {wheres}",
               times=times, types=types, key=tuple(match.values()),
               batched=f"UPDATE {table.name} AS t {batched_sets} FROM unnest("
               f"{', '.join(':' + n for n in names)}) AS v({', '.join(names)}) "
               f"WHERE {batched_wheres}")


# --- accepting ---------------------------------------------------------------------------------

def raw_insert(table: Table, columns: Sequence[str], *, times: Iterable[str] = (),
               json: Iterable[str] = ()) -> Raw:
    """INSERT INTO table (columns) VALUES (:columns), each parameter named after its column."""
    names = ", ".join(f'"{table.c[c].name}"' for c in columns)  # KeyError for a typo
    values = ", ".join(f":{c}" for c in columns)
    # the names are the schema's own (tables.py), never input
    return Raw(f"INSERT INTO {table.name} ({names}) VALUES ({values})",  # noqa: S608
               times=times, json=json)


insert_omnimessages = raw_insert(
    omnimessages, ("id", "account_id", "surface", "to", "state", "priority", "time_to_send",
                     "dlr_url", "text_store", "variants", "extra", "created_at", "updated_at"),
    times=("time_to_send", "created_at", "updated_at"), json=("extra",))
insert_attempts = raw_insert(
    attempts, ("id", "omnimessage_id", "account_id", "seq", "channel", "sender", "to", "content",
                 "content_sha256", "validity_seconds", "state", "priority", "due_at", "deadline",
                 "updated_at"),
    times=("due_at", "deadline", "updated_at"), json=("content",))
insert_status_events = raw_insert(status_events, ("attempt_id", "status", "err", "source", "created_at"),
                                  times=("created_at",))

# --- the dispatch queue ------------------------------------------------------------------------

_CLAIMED = (attempts.c.id, attempts.c.omnimessage_id, attempts.c.account_id, attempts.c.channel,
            attempts.c.to, attempts.c.sender, attempts.c.content, attempts.c.deadline,
            attempts.c.priority, attempts.c.due_at, attempts.c.tries,
            attempts.c.charged_parts)  # set: an earlier claim charged it (store.pricing)


# Fair share: the claim looks at the next FAIR_WINDOW batches' worth of due attempts (priority,
# then due time, as before) and takes from them round-robin across accounts within each
# priority: every account's first due attempt, then every account's second, and so on. So one
# account's bulk campaign queued ahead of another's few messages does not make those wait for all
# of it. The window is locked (SKIP LOCKED, as before), so concurrent claimers still take disjoint
# sets; it bounds the work of the ranking too. An account with a send rate is held to it after
# the claim (store.ratelimits), its excess put back to fall due at its turn, outside the window.
FAIR_WINDOW = 4


def _claim(by_channel: bool) -> Any:
    window = (select(attempts.c.id, attempts.c.account_id, attempts.c.priority, attempts.c.due_at)
              .where(attempts.c.state == "due", attempts.c.due_at <= bindparam("now"))
              .order_by(attempts.c.priority, attempts.c.due_at)
              .limit(bindparam("window")).with_for_update(skip_locked=True))
    if by_channel:
        window = window.where(attempts.c.channel.in_(bindparam("channels", expanding=True)))
    due = window.subquery("due")
    turn = func.row_number().over(partition_by=(due.c.account_id, due.c.priority),
                                  order_by=(due.c.due_at, due.c.id))
    ranked = select(due.c.id, due.c.priority, due.c.due_at, turn.label("turn")).subquery("ranked")
    chosen = (select(ranked.c.id).order_by(ranked.c.priority, ranked.c.turn, ranked.c.due_at)
              .limit(bindparam("limit")))
    return (update(attempts).where(attempts.c.id.in_(chosen.scalar_subquery()))
            .values(state="sending", lease_owner=bindparam("owner"),
                    lease_until=bindparam("lease_until"), tries=attempts.c.tries + 1,
                    updated_at=bindparam("now"))
            .returning(*_CLAIMED))


claim_due = _claim(by_channel=False)
claim_due_on_channels = _claim(by_channel=True)

# The claim's blacklist check. Most batches come from accounts without a blacklist, and this
# one-account probe costs about a bare round trip; the lookup of a batch's numbers (a superset
# of its pairs: account in, number in) several times that. A row-value IN of the pairs was
# slower still.
_BLACKLIST = phonebook_blacklist.c
any_blacklist = (select(_BLACKLIST.account_id)
                 .where(_BLACKLIST.account_id.in_(bindparam("accounts", expanding=True)))
                 .limit(1))
blacklisted = (select(_BLACKLIST.account_id, _BLACKLIST.phone)
               .where(_BLACKLIST.account_id.in_(bindparam("accounts", expanding=True)),
                      _BLACKLIST.phone.in_(bindparam("phones", expanding=True))))

# A claimed attempt its account's send rate holds back (store.ratelimits): due again at its turn,
# and the claim was not a try.
put_back_held = Raw(
    "UPDATE attempts SET state = 'due', due_at = :due, lease_owner = NULL, lease_until = NULL, "
    "tries = tries - 1, updated_at = :now WHERE id = :mid AND state = 'sending'",
    times=("due", "now"))

# Only the lease holder records an outcome: an attempt whose lease ran out and was claimed again
# belongs to its new holder.
_MINE = (attempts.c.id == bindparam("mid"), attempts.c.state == "sending",
         attempts.c.lease_owner == bindparam("owner"))

requeue_sending = (update(attempts).where(*_MINE)
                   .values(state="due", due_at=bindparam("due"), lease_owner=None,
                           lease_until=None, updated_at=bindparam("now")))
# sent_at is when the submission began: no receipt for it can be older (see transitions)
mark_sent = batch_update(
    attempts, values={"sent_at": "sent", "parts_count": "parts", "updated_at": "now"},
    fixed="state = 'sent', lease_owner = NULL, lease_until = NULL",
    match={"id": "mid", "lease_owner": "owner"}, guard="state = 'sending'",
    types={"mid": "text", "owner": "text", "sent": "timestamp", "parts": "integer",
           "now": "timestamp"}, times=("now", "sent"))


# The newest submission owns an upstream id: SMSCs restart, wrap or reset their counters.
upsert_refs = Raw(
    "INSERT INTO provider_refs (channel, ref, attempt_id, part) VALUES (:channel, :ref, "
    ":attempt_id, :part) ON CONFLICT (channel, ref) DO UPDATE SET attempt_id = "
    "excluded.attempt_id, part = excluded.part, status = NULL, err = NULL",
    batched="INSERT INTO provider_refs (channel, ref, attempt_id, part) SELECT * FROM "
    "unnest(:channel, :ref, :attempt_id, :part) ON CONFLICT (channel, ref) DO UPDATE SET "
    "attempt_id = excluded.attempt_id, part = excluded.part, status = NULL, err = NULL",
    types={"channel": "text", "ref": "text", "attempt_id": "text", "part": "integer"},
    key=("channel", "ref"))


# --- status transitions ------------------------------------------------------------------------


def _attempt_rows(lock: bool) -> Any:
    # Only what a transition reads: each datetime column left out is a parse per row saved.
    a = attempts.c
    query = (select(a.id, a.omnimessage_id, a.account_id, a.seq, a.channel, a.sender, a.to,
                    a.content, a.state, a.status, a.err, a.error, a.parts_count, a.sent_at,
                    a.part_price_micros, a.charged_parts,
                    omnimessages.c.surface, omnimessages.c.dlr_url.label("om_dlr_url"),
                    omnimessages.c.text_store, omnimessages.c.extra, omnimessages.c.variants,
                    accounts.c.dlr_url.label("account_dlr_url"))
             .join(omnimessages, omnimessages.c.id == attempts.c.omnimessage_id)
             .join(accounts, accounts.c.id == attempts.c.account_id)
             .where(attempts.c.id.in_(bindparam("ids", expanding=True)))
             .order_by(attempts.c.id))
    # Locking in one order (by id) everywhere keeps concurrent writers from deadlocking.
    return query.with_for_update(of=attempts) if lock else query


attempt_rows_locked = _attempt_rows(lock=True)
attempt_rows_not_messente = _attempt_rows(lock=False).where(omnimessages.c.surface != "messente")

class ByKeys:
    """Rows of a table by (channel, ref) keys, one statement per dialect. SQLite takes a row-value
    IN. PostgreSQL plans that as an OR of index probes: 42 ms of planning for 500 keys once the
    table is analysed, and before its first ANALYZE (a fresh or fast-growing table) a scan of
    every row against the whole list, 245 ms at 40,000 refs. Joined to two unnested arrays it is
    one 10 ms hash or index join either way, and one statement text for any number of keys."""

    def __init__(self, table: Table, columns: Sequence[str], order_by: str | None = None) -> None:
        chosen = select(*(table.c[name] for name in columns))
        if order_by:
            chosen = chosen.order_by(table.c[order_by])
        key = tuple_(table.c.channel, table.c.ref)
        self._in = chosen.where(key.in_(bindparam("keys", expanding=True)))
        wanted = func.unnest(bindparam("channels", type_=ARRAY(String)),
                             bindparam("refs", type_=ARRAY(String))
                             ).table_valued("channel", "ref").render_derived(name="k")
        self._unnest = chosen.join_from(table, wanted, and_(
            table.c.channel == wanted.c.channel, table.c.ref == wanted.c.ref))

    def rows(self, conn: Connection, keys: Iterable[tuple[str, str | None]]
             ) -> Sequence[Row[Any]]:
        listed = list(keys)
        if conn.dialect.name == "postgresql":
            return conn.execute(self._unnest, {"channels": [c for c, _ in listed],
                                               "refs": [r for _, r in listed]}).all()
        return conn.execute(self._in, {"keys": listed}).all()


parked_for_keys = ByKeys(unmatched_reports, [c.name for c in unmatched_reports.c], order_by="id")
delete_parked = delete(unmatched_reports).where(
    unmatched_reports.c.id.in_(bindparam("ids", expanding=True)))
park_reports = insert(unmatched_reports)

refs_for_keys = ByKeys(provider_refs, ["channel", "ref", "attempt_id", "part"])
set_part_status = batch_update(
    provider_refs, values={"status": "s", "err": "e"}, match={"channel": "c", "ref": "r"},
    types={"c": "text", "r": "text", "s": "text", "e": "integer"})
part_statuses = (select(provider_refs.c.attempt_id, provider_refs.c.status)
                 .where(provider_refs.c.attempt_id.in_(bindparam("ids", expanding=True)))
                 .order_by(provider_refs.c.attempt_id, provider_refs.c.part))

finish_attempts = batch_update(
    attempts, values={"status": "status", "err": "err", "error": "error", "updated_at": "now"},
    fixed="state = 'done', lease_owner = NULL, lease_until = NULL", match={"id": "mid"},
    types={"mid": "text", "status": "text", "err": "integer", "error": "text",
           "now": "timestamp"}, times=("now",))
progress_attempts = (update(attempts).where(attempts.c.id == bindparam("mid"))
                     .values(status=bindparam("status"), err=bindparam("err"),
                             error=bindparam("error"), updated_at=bindparam("now")))
skip_later_variants = (update(attempts)
                       .where(attempts.c.omnimessage_id == bindparam("om"),
                              attempts.c.seq > bindparam("after"), attempts.c.state == "waiting")
                       .values(state="skipped", updated_at=bindparam("now")))
end_omnimessages = Raw("UPDATE omnimessages SET state = 'done', updated_at = :now "
                       "WHERE id = :om", times=("now",))
forget_content = (update(attempts).where(attempts.c.omnimessage_id == bindparam("om"))
                  .values(content=None))

waiting_variants = (select(attempts.c.id, attempts.c.omnimessage_id, attempts.c.seq,
                           attempts.c.validity_seconds)
                    .where(attempts.c.omnimessage_id.in_(bindparam("oms", expanding=True)),
                           attempts.c.state == "waiting")
                    .order_by(attempts.c.omnimessage_id, attempts.c.seq))
start_variants = (update(attempts).where(attempts.c.id == bindparam("mid"),
                                         attempts.c.state == "waiting")
                  .values(state="due", due_at=bindparam("now"), deadline=bindparam("deadline"),
                          updated_at=bindparam("now")))
insert_webhooks = insert(webhooks)

# --- expiry ------------------------------------------------------------------------------------

expired_attempts = (select(attempts.c.id, attempts.c.channel)
                    .where(attempts.c.state.in_(("due", "sent")),
                           attempts.c.deadline <= bindparam("now"))
                    .limit(bindparam("limit")).with_for_update(skip_locked=True))

# --- the webhook outbox ------------------------------------------------------------------------

_earlier = webhooks.alias("earlier")
_w = webhooks.c
_claimable = (_w.state == "pending",
              or_(_w.lease_until.is_(None), _w.lease_until < bindparam("now")),
              # a report waits while an earlier one of the same message is pending
              ~exists().where(_earlier.c.order_key == _w.order_key,
                              _earlier.c.state == "pending", _earlier.c.id < _w.id))


def _outside(origins: tuple[str, ...]) -> list[ColumnElement[bool]]:
    """Rows whose URL is not under any of `origins` (scheme://authority as written): how the
    claim leaves out the receivers that have all the requests they can take."""
    conditions: list[ColumnElement[bool]] = []
    for origin in origins:
        n: Any = literal_column(str(len(origin)))
        after: Any = literal_column(str(len(origin) + 1))
        conditions.append(~and_(
            func.substr(_w.url, literal_column("1"), n) == origin,
            or_(func.length(_w.url) == n,
                func.substr(_w.url, after, literal_column("1")).in_(("/", "?", "#")))))
    return conditions


# Built per set of left-out receivers and kept: that set changes only when a receiver fills up
# or drains, so the same few statements serve many claims.
@lru_cache(maxsize=64)
def claim_webhook_candidates(excluded: tuple[str, ...]) -> Select[int, str]:
    return (select(_w.id, _w.url)
            .where(*_claimable, _w.next_try_at <= bindparam("now"), *_outside(excluded))
            .order_by(_w.next_try_at, _w.id)
            .limit(bindparam("limit")).with_for_update(skip_locked=True))


@lru_cache(maxsize=64)
def next_claimable_webhook(excluded: tuple[str, ...]) -> Select[datetime | None]:
    return select(func.min(_w.next_try_at)).where(*_claimable, *_outside(excluded))


lease_webhooks = (update(webhooks).where(_w.id.in_(bindparam("ids", expanding=True)))
                  .values(lease_until=bindparam("lease_until"))
                  .returning(_w.id, _w.account_id, _w.kind, _w.url, _w.body, _w.tries))
webhooks_delivered = (update(webhooks).where(webhooks.c.id.in_(bindparam("ids", expanding=True)))
                      .values(state="done", tries=webhooks.c.tries + 1, done_at=bindparam("now"),
                              lease_until=None, last_error=None,
                              last_status=bindparam("status", type_=Integer)))
webhooks_failed = (update(webhooks).where(webhooks.c.id == bindparam("wid"))
                   .values(state=bindparam("new_state"),
                           tries=webhooks.c.tries + bindparam("inc"),
                           next_try_at=bindparam("next_try"), lease_until=None,
                           last_error=bindparam("message"),
                           # a try that got no answer keeps the status of the last one that did
                           last_status=func.coalesce(bindparam("status", type_=Integer),
                                                     webhooks.c.last_status)))
