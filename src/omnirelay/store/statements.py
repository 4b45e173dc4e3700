"""The hot statements, built once at import and named, like procrastinate's queries.

Building a Core statement and its cache key is most of its cost when it is rebuilt on every call
(the claim's UPDATE ... RETURNING: 774 µs built each call, 81 µs prebuilt, on this machine), so the
statements the engine runs per batch are built here with `bindparam` for every value, lists as
expanding parameters, and run as they are. Statements that run rarely (accounts, admin, reads for
the API) stay beside their code in `queries.py`, where they read better.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from omnirelay.store.tables import (
    accounts,
    attempts,
    omnimessages,
    provider_refs,
    status_events,
    unmatched_reports,
    webhooks,
)

# --- accepting ---------------------------------------------------------------------------------

insert_omnimessages = insert(omnimessages)
insert_attempts = insert(attempts)

# --- the dispatch queue ------------------------------------------------------------------------

_CLAIMED = (attempts.c.id, attempts.c.omnimessage_id, attempts.c.account_id, attempts.c.channel,
            attempts.c.to, attempts.c.sender, attempts.c.content, attempts.c.deadline,
            attempts.c.priority, attempts.c.due_at, attempts.c.tries)


def _claim(by_channel: bool) -> Any:
    due = (select(attempts.c.id)
           .where(attempts.c.state == "due", attempts.c.due_at <= bindparam("now"))
           .order_by(attempts.c.priority, attempts.c.due_at)
           .limit(bindparam("limit")).with_for_update(skip_locked=True))
    if by_channel:
        due = due.where(attempts.c.channel.in_(bindparam("channels", expanding=True)))
    return (update(attempts).where(attempts.c.id.in_(due.scalar_subquery()))
            .values(state="sending", lease_owner=bindparam("owner"),
                    lease_until=bindparam("lease_until"), tries=attempts.c.tries + 1,
                    updated_at=bindparam("now"))
            .returning(*_CLAIMED))


claim_due = _claim(by_channel=False)
claim_due_on_channels = _claim(by_channel=True)

# Only the lease holder records an outcome: an attempt whose lease ran out and was claimed again
# belongs to its new holder.
_MINE = (attempts.c.id == bindparam("mid"), attempts.c.state == "sending",
         attempts.c.lease_owner == bindparam("owner"))

requeue_sending = (update(attempts).where(*_MINE)
                   .values(state="due", due_at=bindparam("due"), lease_owner=None,
                           lease_until=None, updated_at=bindparam("now")))
mark_sent = (update(attempts).where(*_MINE)
             .values(state="sent", sent_at=bindparam("now"), parts_count=bindparam("parts"),
                     lease_owner=None, lease_until=None, updated_at=bindparam("now")))


def upsert_refs(sqlite: bool) -> Any:
    """The newest submission owns an upstream id: SMSCs restart, wrap or reset their counters."""
    statement = (sqlite_insert if sqlite else postgresql_insert)(provider_refs)
    return statement.on_conflict_do_update(
        index_elements=[provider_refs.c.channel, provider_refs.c.ref],
        set_={"attempt_id": statement.excluded.attempt_id, "part": statement.excluded.part,
              "status": None, "err": None})


UPSERT_REFS = {True: upsert_refs(True), False: upsert_refs(False)}

_REF_KEY = tuple_(provider_refs.c.channel, provider_refs.c.ref)
_UNMATCHED_KEY = tuple_(unmatched_reports.c.channel, unmatched_reports.c.ref)

# --- status transitions ------------------------------------------------------------------------


def _attempt_rows(lock: bool) -> Any:
    query = (select(attempts, omnimessages.c.surface, omnimessages.c.dlr_url.label("om_dlr_url"),
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

parked_for_keys = (select(unmatched_reports)
                   .where(_UNMATCHED_KEY.in_(bindparam("keys", expanding=True)))
                   .order_by(unmatched_reports.c.id))
delete_parked = delete(unmatched_reports).where(
    unmatched_reports.c.id.in_(bindparam("ids", expanding=True)))
park_reports = insert(unmatched_reports)

refs_for_keys = (select(provider_refs.c.channel, provider_refs.c.ref, provider_refs.c.attempt_id)
                 .where(_REF_KEY.in_(bindparam("keys", expanding=True))))
set_part_status = (update(provider_refs)
                   .where(provider_refs.c.channel == bindparam("c"),
                          provider_refs.c.ref == bindparam("r"))
                   .values(status=bindparam("s"), err=bindparam("e")))
part_statuses = (select(provider_refs.c.attempt_id, provider_refs.c.status)
                 .where(provider_refs.c.attempt_id.in_(bindparam("ids", expanding=True)))
                 .order_by(provider_refs.c.attempt_id, provider_refs.c.part))

finish_attempts = (update(attempts).where(attempts.c.id == bindparam("mid"))
                   .values(status=bindparam("status"), err=bindparam("err"),
                           error=bindparam("error"), state="done", lease_owner=None,
                           lease_until=None, updated_at=bindparam("now")))
progress_attempts = (update(attempts).where(attempts.c.id == bindparam("mid"))
                     .values(status=bindparam("status"), err=bindparam("err"),
                             error=bindparam("error"), updated_at=bindparam("now")))
skip_later_variants = (update(attempts)
                       .where(attempts.c.omnimessage_id == bindparam("om"),
                              attempts.c.seq > bindparam("after"), attempts.c.state == "waiting")
                       .values(state="skipped", updated_at=bindparam("now")))
end_omnimessages = (update(omnimessages).where(omnimessages.c.id == bindparam("om"))
                    .values(state="done", updated_at=bindparam("now")))
forget_content = (update(attempts).where(attempts.c.omnimessage_id == bindparam("om"))
                  .values(content=None))
insert_status_events = insert(status_events)
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
claim_webhooks = (
    update(webhooks)
    .where(webhooks.c.id.in_(
        select(webhooks.c.id)
        .where(webhooks.c.state == "pending", webhooks.c.next_try_at <= bindparam("now"),
               or_(webhooks.c.lease_until.is_(None), webhooks.c.lease_until < bindparam("now")),
               # a report waits while an earlier one of the same message is pending
               ~exists().where(_earlier.c.order_key == webhooks.c.order_key,
                               _earlier.c.state == "pending", _earlier.c.id < webhooks.c.id))
        .order_by(webhooks.c.next_try_at, webhooks.c.id)
        .limit(bindparam("limit")).with_for_update(skip_locked=True)
        .scalar_subquery()))
    .values(lease_until=bindparam("lease_until"))
    .returning(webhooks.c.id, webhooks.c.account_id, webhooks.c.kind, webhooks.c.url,
               webhooks.c.body, webhooks.c.headers, webhooks.c.tries))
webhooks_delivered = (update(webhooks).where(webhooks.c.id.in_(bindparam("ids", expanding=True)))
                      .values(state="done", tries=webhooks.c.tries + 1, done_at=bindparam("now"),
                              lease_until=None, last_error=None))
webhooks_failed = (update(webhooks).where(webhooks.c.id == bindparam("wid"))
                   .values(state=bindparam("new_state"),
                           tries=webhooks.c.tries + bindparam("inc"),
                           next_try_at=bindparam("next_try"), lease_until=None,
                           last_error=bindparam("message")))
