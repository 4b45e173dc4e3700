"""Every query omnirelay runs, in one place, as SQLAlchemy Core on SQLite and PostgreSQL alike.

Each public method is one transaction. Work queues (due attempts, webhooks) are claimed in batches
with a lease: `FOR UPDATE SKIP LOCKED` on PostgreSQL lets many processes claim side by side, and a
lease that runs out (its worker died) makes the work claimable again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from omnirelay.core.accept import NewOmnimessage
from omnirelay.core.addresses import number_keys
from omnirelay.core.destinations import receiver_host
from omnirelay.core.logthrottle import LogThrottle
from omnirelay.core.reports import WebhookDraft
from omnirelay.core.schedule import deadline, first_due
from omnirelay.core.secrets import SecretBox
from omnirelay.core.statuses import FAILURE, Err, Status
from omnirelay.metrics import Metrics
from omnirelay.store import idempotency
from omnirelay.store import statements as S
from omnirelay.store.database import Database, describe
from omnirelay.store.phonebook import forget_account as forget_phonebook
from omnirelay.store.pricing import ChargeItem, Settlement, charge, settle
from omnirelay.store.ratelimits import fair_order, hold_to_send_rates
from omnirelay.store.tables import (
    accounts,
    attempts,
    inbound_fragments,
    inbound_messages,
    inbound_numbers,
    omnimessages,
    provider_refs,
    subscribers,
    unmatched_reports,
    webhooks,
    workers,
)
from omnirelay.store.transitions import (
    Effects,
    Report,
    ReportBuilder,
    StatusWriter,
    enqueue_webhooks,
)
from omnirelay.store.writer import Op, Submission, Writer

__all__ = ["Report", "Store"]

log = logging.getLogger(__name__)


# --- values --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    api_username: str
    api_password: str
    twilio_account_sid: str
    twilio_auth_token: str
    inbound_secret: str
    default_sender: str
    dlr_url: str | None
    inbound_url: str | None
    replacements: dict[str, str] | None
    created_at: datetime
    state: str = "active"
    max_rps: int | None = None  # omnimessages accepted per second (omnirelay.ratelimits)
    max_send_rps: int | None = None  # attempts handed to channels per second

    def __repr__(self) -> str:  # never print secrets, not even in a traceback
        return f"Account(id={self.id}, name={self.name!r})"


@dataclass(frozen=True, slots=True)
class AttemptView:
    message_id: str
    seq: int
    channel: str
    sender: str
    to: str
    content: dict[str, Any] | None
    state: str
    status: str | None
    err: int | None
    error: str | None
    parts_count: int | None
    sent_at: datetime | None
    updated_at: datetime
    part_price_micros: int | None = None  # what submitting it was charged (store.pricing)
    charged_parts: int | None = None


@dataclass(frozen=True, slots=True)
class OmnimessageView:
    id: str
    account_id: int
    surface: str
    to: str
    state: str
    priority: int
    time_to_send: datetime | None
    dlr_url: str | None
    text_store: str
    extra: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    attempts: tuple[AttemptView, ...] = ()


@dataclass(frozen=True, slots=True)
class ClaimedAttempt:
    message_id: str
    omnimessage_id: str
    account_id: int
    channel: str
    to: str
    sender: str
    content: dict[str, Any]
    deadline: datetime | None
    priority: int
    due_at: datetime
    tries: int


@dataclass(frozen=True, slots=True)
class Claim:
    """The claimed attempts to hand to channels, and what ending the blacklisted ones (which
    are not among them) set in motion."""

    attempts: list[ClaimedAttempt]
    effects: Effects


# the `error` of an attempt its account's blacklist stopped
BLACKLISTED = "the recipient is on the account's blacklist"
# the `error` of an attempt its account's prepaid balance did not cover (err 4)
CREDIT_REFUSED = "Error crediting account: the balance does not cover this message"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What the dispatcher learned from a channel about one claimed attempt."""

    message_id: str
    status: str | None = None
    err: int | None = None
    error: str | None = None
    provider_refs: tuple[str, ...] = ()
    parts_count: int = 1
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class OutcomeUnit:
    """A send outcome as the writer takes it: with the channel, the lease holder that may record
    it, and when the channel was handed the attempt."""

    outcome: SendOutcome
    channel: str
    owner: str
    submitted_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    owner: str
    limit: int
    lease_until: datetime
    channels: tuple[str, ...] | None


# an inbound message's row and the webhooks it queues
InboundUnit = tuple[dict[str, Any], list[tuple[int, str, WebhookDraft]]]


@dataclass(frozen=True, slots=True)
class ClaimedWebhook:
    id: int
    account_id: int
    kind: str
    url: str
    body: bytes
    headers: dict[str, str]
    tries: int


class WebhookClaim(NamedTuple):
    limit: int
    lease_seconds: float
    per_receiver: int | None
    excluded_origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    id: int
    delivered: bool
    retry_in: float = 0.0  # seconds, when not delivered
    error: str | None = None
    give_up: bool = False
    deferred: bool = False  # put back without trying (receiver saturated); not a try
    status: int | None = None  # the receiver's HTTP status, when it answered


@dataclass(frozen=True, slots=True)
class Inbound:
    channel: str
    sender: str
    recipient: str
    text: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Fragment:
    channel: str
    sender: str
    recipient: str
    group_key: str
    total: int
    seq: int
    text: str
    received_at: datetime


# --- the store -----------------------------------------------------------------------------------

class Store:
    def __init__(self, db: Database, box: SecretBox, report_builder: ReportBuilder,
                 metrics: Metrics | None = None, receipt_match_window: float = 120.0) -> None:
        self.db = db
        # a parked receipt may match a submission that began at most this long before it arrived
        self.match_window = timedelta(seconds=receipt_match_window)
        self._unmatched_log = LogThrottle(log)
        self._unowned_log = LogThrottle(log)
        self.box = box
        self.report_builder = report_builder
        self.metrics = metrics
        # One writer per process; each kind of write is an op, in the order a transaction that
        # holds several kinds applies them (outcomes before the receipts that may match them).
        self.writer = Writer(db)
        self._accept_op: Op[NewOmnimessage, datetime, None] = Op("accept", 0, self._accept)
        # An accept with its Idempotency-Key: one submission, so one fate for both.
        self._accept_keyed_op: Op[NewOmnimessage, tuple[datetime, idempotency.KeyRecord], None] = (
            Op("accept_keyed", 0, self._accept_keyed))
        self._outcomes_op: Op[OutcomeUnit, datetime, Effects] = Op(
            "send_outcomes", 1, self._record_outcomes, isolated_units=True, combine=Effects.__or__)
        self._reports_op: Op[Report, datetime, Effects] = Op(
            "reports", 2, self._apply_reports, isolated_units=True, combine=Effects.__or__)
        self._inbound_op: Op[InboundUnit, datetime, None] = Op(
            "inbound", 3, self._store_inbound, isolated_units=True)
        self._webhook_results_op: Op[WebhookResult, datetime, None] = Op(
            "webhook_results", 4, self._finish_webhooks, isolated_units=True)
        self._expire_op: Op[int, datetime, int] = Op("expire", 5, self._expire, merge=False)
        self._claim_op: Op[ClaimRequest, datetime, Claim] = Op(
            "claim", 6, self._claim, merge=False)
        self._claim_webhooks_op: Op[WebhookClaim, datetime, list[ClaimedWebhook]] = Op(
            "claim_webhooks", 7, self._claim_webhooks, merge=False)

    # accounts ------------------------------------------------------------------------------

    async def create_account(
        self, *, name: str, api_username: str, api_password: str, twilio_account_sid: str,
        twilio_auth_token: str, inbound_secret: str, default_sender: str, now: datetime,
        dlr_url: str | None = None, inbound_url: str | None = None,
    ) -> Account:
        values = {
            "name": name,
            "api_username": api_username,
            "api_password_enc": self.box.seal(api_password),
            "twilio_account_sid": twilio_account_sid,
            "twilio_auth_token_enc": self.box.seal(twilio_auth_token),
            "inbound_secret_enc": self.box.seal(inbound_secret),
            "default_sender": default_sender,
            "dlr_url": dlr_url,
            "inbound_url": inbound_url,
            "created_at": now,
        }

        def work(conn: Connection) -> int:
            return int(conn.execute(insert(accounts).values(**values)
                                    .returning(accounts.c.id)).scalar_one())

        account_id = await self.db.write(work)
        account = await self.account_by(accounts.c.id == account_id)
        assert account is not None
        return account

    async def account_by_name(self, name: str) -> Account | None:
        return await self.account_by(accounts.c.name == name)

    # Credentials only open active accounts: a disabled or deleted one is as unknown as a name
    # that never existed, and takes the same path in authentication.
    async def account_by_username(self, username: str) -> Account | None:
        return await self.account_by(and_(accounts.c.api_username == username,
                                          accounts.c.state == "active"))

    async def account_by_sid(self, sid: str) -> Account | None:
        return await self.account_by(and_(accounts.c.twilio_account_sid == sid,
                                          accounts.c.state == "active"))

    async def account_by_id(self, account_id: int) -> Account | None:
        return await self.account_by(accounts.c.id == account_id)

    async def account_by(self, condition: ColumnElement[bool]) -> Account | None:
        def work(conn: Connection) -> Any:
            return conn.execute(select(accounts).where(condition)).mappings().first()

        row = await self.db.read(work)
        return None if row is None else self._account(row)

    async def list_accounts(self) -> list[Account]:
        def work(conn: Connection) -> Any:
            return conn.execute(select(accounts).where(accounts.c.state != "deleted")
                                .order_by(accounts.c.id)).mappings().all()

        return [self._account(row) for row in await self.db.read(work)]

    async def count_accounts(self) -> int:
        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(accounts)).scalar_one())

        return await self.db.read(work)

    async def update_account(self, account_id: int, **changes: Any) -> Account:
        """Change settings or secrets; secrets are given in clear and sealed here."""
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key in {"api_password", "twilio_auth_token", "inbound_secret"}:
                values[key + "_enc"] = self.box.seal(value)
            else:
                values[key] = value

        def work(conn: Connection) -> None:
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))

        await self.db.write(work)
        account = await self.account_by_id(account_id)
        assert account is not None
        return account

    async def delete_account(self, account_id: int, scrubbed: Mapping[str, str]) -> None:
        """The account's credentials stop opening anything and its names are free again; its
        messages, inbound and callbacks stay until retention purges them. `scrubbed`: fresh
        random secrets, in clear, to seal over the old ones."""
        def work(conn: Connection) -> None:
            freed = f"~deleted~{account_id}"  # no name, username or SID can look like this
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(
                state="deleted", name=freed, api_username=freed, twilio_account_sid=freed,
                **{key + "_enc": self.box.seal(value) for key, value in scrubbed.items()}))
            conn.execute(delete(inbound_numbers).where(inbound_numbers.c.account_id == account_id))
            forget_phonebook(conn, account_id)

        await self.db.write(work)

    async def set_inbound_numbers(self, account_id: int, numbers: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(numbers))

        def work(conn: Connection) -> None:
            conn.execute(delete(inbound_numbers).where(inbound_numbers.c.account_id == account_id))
            conn.execute(delete(inbound_numbers).where(inbound_numbers.c.number.in_(wanted)))
            if wanted:
                conn.execute(insert(inbound_numbers),
                             [{"number": n, "account_id": account_id} for n in wanted])

        await self.db.write(work)

    async def inbound_numbers_of(self, account_id: int) -> list[str]:
        def work(conn: Connection) -> list[str]:
            query = select(inbound_numbers.c.number).where(
                inbound_numbers.c.account_id == account_id).order_by(inbound_numbers.c.number)
            return list(conn.execute(query).scalars())

        return await self.db.read(work)

    def _account(self, row: Any) -> Account:
        return Account(
            id=row["id"], name=row["name"], api_username=row["api_username"],
            api_password=self.box.open(row["api_password_enc"]),
            twilio_account_sid=row["twilio_account_sid"],
            twilio_auth_token=self.box.open(row["twilio_auth_token_enc"]),
            inbound_secret=self.box.open(row["inbound_secret_enc"]),
            default_sender=row["default_sender"], dlr_url=row["dlr_url"],
            inbound_url=row["inbound_url"], replacements=row["replacements"],
            created_at=row["created_at"], state=row["state"],
            max_rps=row["max_rps"], max_send_rps=row["max_send_rps"],
        )

    # accepting -----------------------------------------------------------------------------

    async def insert_omnimessages(self, items: Sequence[NewOmnimessage], now: datetime,
                                  remember: idempotency.KeyRecord | None = None) -> None:
        """Store accepted omnimessages and their attempts; committed when this returns. Requests
        that arrive while a transaction is being written share the next one. With `remember`,
        its key is committed with them (even for no items), or KeyTaken is raised and nothing
        is stored when another request holds the key."""
        if remember is None:
            if items:
                await self.writer.submit(self._accept_op, items, now)
            return
        try:
            await self.writer.submit(self._accept_keyed_op, items, (now, remember))
        except IntegrityError:
            found = await self.remembered(remember.account_id, remember.key,
                                          remember.expired_before)
            if found is None:
                raise
            raise idempotency.KeyTaken(remember.key, found) from None

    async def remembered(self, account_id: int, key: str, since: datetime
                         ) -> idempotency.Remembered | None:
        """The answer stored under an idempotency key since `since`, if any."""
        return await self.db.read(lambda conn: idempotency.lookup(conn, account_id, key, since))

    def _accept_keyed(self, conn: Connection, submissions: Sequence[
            Submission[NewOmnimessage, tuple[datetime, idempotency.KeyRecord]]]) -> list[None]:
        self._accept(conn, [Submission(s.units, s.context[0]) for s in submissions])
        idempotency.remember(conn, [(s.context[1], s.context[0]) for s in submissions])
        return [None] * len(submissions)

    def _accept(self, conn: Connection, submissions: Sequence[Submission[NewOmnimessage, datetime]]
                ) -> list[None]:
        message_rows: list[dict[str, Any]] = []
        attempt_rows: list[dict[str, Any]] = []
        for submission in submissions:
            now = submission.context
            for item in submission.units:
                message_rows.append({
                    "id": item.id, "account_id": item.account_id, "surface": item.surface,
                    "to": item.to, "state": "accepted", "priority": item.priority,
                    "time_to_send": item.time_to_send, "dlr_url": item.dlr_url,
                    "text_store": item.text_store, "variants": len(item.attempts),
                    "extra": item.extra, "created_at": now, "updated_at": now,
                })
                start = first_due(item.time_to_send, now)
                for attempt in item.attempts:
                    first = attempt.seq == 0
                    attempt_rows.append({
                        "id": attempt.message_id, "omnimessage_id": item.id,
                        "account_id": item.account_id, "seq": attempt.seq,
                        "channel": attempt.channel, "sender": attempt.sender, "to": item.to,
                        "content": attempt.content,
                        "content_sha256": _content_hash(attempt.content)
                        if item.text_store == "sha256" else None,
                        "validity_seconds": attempt.validity_seconds,
                        "state": "due" if first else "waiting", "priority": item.priority,
                        "due_at": start if first else None,
                        "deadline": deadline(start, attempt.validity_seconds) if first else None,
                        "updated_at": now,
                    })
        S.insert_omnimessages.run(conn, message_rows)
        S.insert_attempts.run(conn, attempt_rows)
        self.db.notify(conn, "attempts")
        return [None] * len(submissions)

    # reading -------------------------------------------------------------------------------

    async def omnimessage(self, account_id: int, omnimessage_id: str) -> OmnimessageView | None:
        def work(conn: Connection) -> OmnimessageView | None:
            row = conn.execute(select(omnimessages).where(
                omnimessages.c.id == omnimessage_id, omnimessages.c.account_id == account_id,
            )).mappings().first()
            if row is None:
                return None
            return self._view(row, self._attempt_views(conn, [omnimessage_id])[omnimessage_id])

        return await self.db.read(work)

    async def list_omnimessages(
        self, account_id: int, *, surface: str, to: str | None = None,
        sender: str | None = None, sent_after: datetime | None = None,
        sent_before: datetime | None = None, offset: int = 0, limit: int = 50,
    ) -> list[OmnimessageView]:
        """Newest first, as Twilio lists messages."""
        def work(conn: Connection) -> list[OmnimessageView]:
            query = select(omnimessages).where(omnimessages.c.account_id == account_id,
                                               omnimessages.c.surface == surface)
            if to is not None:
                query = query.where(omnimessages.c.to == to)
            if sender is not None:
                query = query.where(exists().where(attempts.c.omnimessage_id == omnimessages.c.id,
                                                   attempts.c.sender == sender))
            if sent_after is not None:
                query = query.where(omnimessages.c.created_at >= sent_after)
            if sent_before is not None:
                query = query.where(omnimessages.c.created_at < sent_before)
            query = query.order_by(omnimessages.c.created_at.desc(), omnimessages.c.id.desc())
            rows = conn.execute(query.offset(offset).limit(limit)).mappings().all()
            views = self._attempt_views(conn, [r["id"] for r in rows])
            return [self._view(r, views[r["id"]]) for r in rows]

        return await self.db.read(work)

    def _attempt_views(self, conn: Connection, ids: list[str]) -> dict[str, list[AttemptView]]:
        result: dict[str, list[AttemptView]] = {i: [] for i in ids}
        if not ids:
            return result
        rows = conn.execute(select(attempts).where(attempts.c.omnimessage_id.in_(ids))
                            .order_by(attempts.c.omnimessage_id, attempts.c.seq)).mappings()
        for r in rows:
            result[r["omnimessage_id"]].append(AttemptView(
                message_id=r["id"], seq=r["seq"], channel=r["channel"], sender=r["sender"],
                to=r["to"], content=r["content"], state=r["state"], status=r["status"],
                err=r["err"], error=r["error"], parts_count=r["parts_count"],
                sent_at=r["sent_at"], updated_at=r["updated_at"],
                part_price_micros=r["part_price_micros"], charged_parts=r["charged_parts"],
            ))
        return result

    @staticmethod
    def _view(row: Any, attempt_views: list[AttemptView]) -> OmnimessageView:
        return OmnimessageView(
            id=row["id"], account_id=row["account_id"], surface=row["surface"], to=row["to"],
            state=row["state"], priority=row["priority"], time_to_send=row["time_to_send"],
            dlr_url=row["dlr_url"], text_store=row["text_store"], extra=row["extra"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            attempts=tuple(attempt_views),
        )

    # canceling and editing -----------------------------------------------------------------

    async def cancel(self, account_id: int, omnimessage_id: str, now: datetime) -> bool:
        """Cancel an omnimessage none of whose attempts has been claimed yet.

        The decisive statement updates the first attempt's row, the same row a claim locks, so a
        cancel and a claim cannot both win."""
        def work(conn: Connection) -> bool:
            won = conn.execute(update(attempts).where(
                attempts.c.omnimessage_id == omnimessage_id, attempts.c.account_id == account_id,
                attempts.c.seq == 0, attempts.c.state == "due",
            ).values(state="canceled", updated_at=now)).rowcount
            if won != 1:
                return False
            conn.execute(update(attempts).where(
                attempts.c.omnimessage_id == omnimessage_id, attempts.c.state == "waiting",
            ).values(state="canceled", updated_at=now))
            conn.execute(update(omnimessages).where(omnimessages.c.id == omnimessage_id)
                         .values(state="canceled", updated_at=now))
            return True

        return await self.db.write(work)

    async def forget_content(self, account_id: int, omnimessage_id: str, now: datetime) -> bool:
        def work(conn: Connection) -> bool:
            found = conn.execute(update(omnimessages).where(
                omnimessages.c.id == omnimessage_id, omnimessages.c.account_id == account_id,
            ).values(updated_at=now)).rowcount
            conn.execute(update(attempts).where(attempts.c.omnimessage_id == omnimessage_id)
                         .values(content=None, content_sha256=None))
            return bool(found)

        return await self.db.write(work)

    async def delete_omnimessage(self, account_id: int, omnimessage_id: str) -> bool:
        """Delete a finished or canceled message; one still in flight is refused (False)."""
        def work(conn: Connection) -> bool:
            busy = conn.execute(select(func.count()).select_from(attempts).where(
                attempts.c.omnimessage_id == omnimessage_id,
                attempts.c.state.in_(("due", "sending", "sent")),
            )).scalar_one()
            if busy:
                return False
            conn.execute(delete(attempts).where(attempts.c.omnimessage_id == omnimessage_id,
                                                attempts.c.account_id == account_id))
            return bool(conn.execute(delete(omnimessages).where(
                omnimessages.c.id == omnimessage_id, omnimessages.c.account_id == account_id,
            )).rowcount)

        return await self.db.write(work)

    # dispatching ---------------------------------------------------------------------------

    async def claim_due_attempts(
        self, owner: str, limit: int, lease_seconds: float, now: datetime,
        channels: Sequence[str] | None = None,
    ) -> list[ClaimedAttempt]:
        """Lease up to `limit` due attempts, highest priority first, then oldest due time."""
        return (await self.claim_due(owner, limit, lease_seconds, now, channels)).attempts

    async def claim_due(
        self, owner: str, limit: int, lease_seconds: float, now: datetime,
        channels: Sequence[str] | None = None,
    ) -> Claim:
        """As claim_due_attempts, and the attempts whose recipient is on their account's
        blacklist end REJECTD in the same transaction instead of being handed out."""
        request = ClaimRequest(owner, limit, now + timedelta(seconds=lease_seconds),
                               tuple(channels) if channels is not None else None)
        written = await self.writer.submit(self._claim_op, [request], now)
        return written.value or Claim([], Effects())

    def _claim(self, conn: Connection, submissions: Sequence[Submission[ClaimRequest, datetime]]
               ) -> list[Claim]:
        (request,) = submissions[0].units
        now = submissions[0].context
        params: dict[str, Any] = {"now": now, "limit": request.limit,
                                  "window": request.limit * S.FAIR_WINDOW,
                                  "owner": request.owner, "lease_until": request.lease_until}
        statement = S.claim_due
        if request.channels is not None:
            statement, params["channels"] = S.claim_due_on_channels, list(request.channels)
        rows = conn.execute(statement, params).all()
        claimed = [ClaimedAttempt(
            message_id=r[0], omnimessage_id=r[1], account_id=r[2], channel=r[3], to=r[4],
            sender=r[5], content=r[6] or {}, deadline=r[7], priority=r[8], due_at=r[9],
            tries=r[10],
        ) for r in rows]
        claimed = fair_order(claimed)
        # a blacklisted recipient is stopped first, and so never charged; an attempt its
        # account's send rate holds back is charged when it is claimed again
        stopped = self._stop_blacklisted(conn, claimed, now)
        kept, _held = hold_to_send_rates(conn, stopped.attempts, now)
        return [self._charge(conn, Claim(kept, stopped.effects),
                             {r[0] for r in rows if r[11] is not None}, now)]

    def _charge(self, conn: Connection, claim: Claim, charged: set[str], now: datetime
                ) -> Claim:
        """Charge what is about to be submitted (store.pricing; `charged`: attempts an earlier
        claim charged already). One the balance does not cover fails here, before any upstream
        sees it, with err 4 (Error crediting account)."""
        refused = charge(conn, [ChargeItem(c.message_id, c.account_id, c.channel, c.to,
                                           c.content, c.message_id in charged)
                                for c in claim.attempts], now)
        if not refused:
            return claim
        writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "submit",
                              self.match_window)
        writer.apply([Report(channel=c.channel, status=Status.FAILED.value,
                             message_id=c.message_id, err=Err.CREDITING,
                             error=CREDIT_REFUSED, occurred_at=now)
                      for c in claim.attempts if c.message_id in refused])
        writer.flush()
        return Claim([c for c in claim.attempts if c.message_id not in refused],
                     claim.effects | writer.effects)

    def _stop_blacklisted(self, conn: Connection, claimed: list[ClaimedAttempt],
                          now: datetime) -> Claim:
        """Checked at the claim, the last moment before a channel gets an attempt, so that a
        number blacklisted after its message was accepted (scheduled, or further down a
        fallback chain) is caught too. Each later variant is claimed, and stopped, in turn."""
        if not claimed:
            return Claim(claimed, Effects())
        accounts = sorted({c.account_id for c in claimed})
        if conn.execute(S.any_blacklist, {"accounts": accounts}).first() is None:
            return Claim(claimed, Effects())
        listed = {(r[0], r[1]) for r in conn.execute(S.blacklisted, {
            "accounts": accounts, "phones": sorted({c.to for c in claimed})})}
        if not listed:
            return Claim(claimed, Effects())
        writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "blacklist",
                              self.match_window)
        writer.apply([Report(channel=c.channel, status=Status.REJECTD,
                             message_id=c.message_id, err=Err.OPERATOR_BLACKLISTED,
                             error=BLACKLISTED, occurred_at=now)
                      for c in claimed if (c.account_id, c.to) in listed])
        writer.flush()
        return Claim([c for c in claimed if (c.account_id, c.to) not in listed], writer.effects)

    async def record_send_outcomes(
        self, owner: str, outcomes: Sequence[SendOutcome], channel_of: dict[str, str],
        now: datetime, submitted_at: datetime | None = None,
    ) -> Effects:
        """Apply what the channels said about claimed attempts; committed when this returns.

        `submitted_at` is when the channel was handed the batch: receipts parked before then
        cannot be for these attempts (an SMSC that reuses ids would otherwise hand a new message
        an old one's receipt), so they are dropped rather than matched. An outcome the database
        refuses on its own is recorded without its upstream ids, else as FAILED, so that it is
        never submitted again by a lease running out."""
        if not outcomes:
            return Effects()
        units = [OutcomeUnit(o, channel_of[o.message_id], owner, submitted_at) for o in outcomes]
        written = await self.writer.submit(self._outcomes_op, units, now)
        effects = written.value or Effects()
        self._count_unmatched("dropped", {channel_of[o.message_id] for o in outcomes},
                              effects.dropped)
        for unit, error in written.refused:
            self._refused("send_outcome", f"the send outcome of attempt {unit.outcome.message_id}",
                          error, "recording it without its upstream ids")
            bare = replace(unit, outcome=replace(unit.outcome, provider_refs=()))
            again = await self.writer.submit(self._outcomes_op, [bare], now)
            if not again.refused:
                continue
            log.error("attempt %s: recording it without upstream ids failed too (%s); "
                      "marking it FAILED", unit.outcome.message_id, describe(again.refused[0][1]))
            failed = replace(unit, outcome=SendOutcome(
                unit.outcome.message_id, status=Status.FAILED.value, err=Err.TEMPORARY,
                error="the gateway could not record the upstream's answer"))
            await self.writer.submit(self._outcomes_op, [failed], now)
        return effects

    def _record_outcomes(self, conn: Connection,
                         submissions: Sequence[Submission[OutcomeUnit, datetime]]) -> list[Effects]:
        now = max(s.context for s in submissions)
        units = sorted((u for s in submissions for u in s.units),
                       key=lambda u: u.outcome.message_id)  # lock order, see transitions
        writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "submit",
                              self.match_window)
        retry = [u for u in units if u.outcome.retry_after is not None]
        accepted = [u for u in units if u.outcome.retry_after is None]
        # before the updates below: only the lease holder's outcome settles its charge
        settle(conn, [Settlement(u.outcome.message_id, u.owner,
                                 None if u.outcome.retry_after is not None
                                 or (u.outcome.status is not None
                                     and Status(u.outcome.status) in FAILURE)
                                 else u.outcome.parts_count) for u in units], now)
        if retry:
            conn.execute(S.requeue_sending, [
                {"mid": u.outcome.message_id, "owner": u.owner, "now": now,
                 "due": now + timedelta(seconds=u.outcome.retry_after or 0)} for u in retry])
        if accepted:
            S.mark_sent.run(conn, [
                {"mid": u.outcome.message_id, "owner": u.owner, "now": now,
                 "sent": min(u.submitted_at or now, now),
                 "parts": u.outcome.parts_count} for u in accepted])
        refs: dict[tuple[str, str], tuple[str, int, datetime | None]] = {
            (u.channel, ref): (u.outcome.message_id, part, u.submitted_at)
            for u in accepted for part, ref in enumerate(u.outcome.provider_refs)}
        if refs:
            S.upsert_refs.run(conn, [{"channel": c, "ref": r, "attempt_id": a, "part": p}
                                     for (c, r), (a, p, _) in refs.items()])
        writer.sent([u.outcome.message_id for u in accepted if u.outcome.status is None])
        writer.apply([Report(channel=u.channel, status=u.outcome.status,
                             message_id=u.outcome.message_id, err=u.outcome.err,
                             error=u.outcome.error, occurred_at=now)
                      for u in accepted if u.outcome.status is not None])
        writer.rematch(list(refs), since={key: value[2] for key, value in refs.items()})
        writer.flush()
        return writer.effects.per_submission(len(submissions))

    def _refused(self, kind: str, what: str, error: Exception, rule: str) -> None:
        log.error("the database refused %s (%s); %s", what, describe(error), rule)
        if self.metrics is not None:
            self.metrics.unit_failures.labels(kind).inc()

    async def apply_reports(self, reports: Sequence[Report], now: datetime) -> Effects:
        """Apply status reports; committed when this returns. A report the database refuses on
        its own is logged and dropped, so an upstream does not redeliver it forever."""
        if not reports:
            return Effects()
        written = await self.writer.submit(self._reports_op, reports, now)
        for report, error in written.refused:
            self._refused("report", f"a {report.status} report for "
                          f"{report.message_id or report.provider_ref}", error, "dropping it")
        effects = written.value or Effects()
        if effects.parked:
            self._count_unmatched("parked", {r.channel for r in reports}, effects.parked)
            self._unmatched_log.warning(
                "%d receipt(s) matched no message (e.g. %s); kept %.0fs for a message whose "
                "submit response has not been recorded yet", effects.parked,
                effects.parked_ref,
                self.match_window.total_seconds())
        return effects

    def _count_unmatched(self, outcome: str, channels: set[str], count: int) -> None:
        # one channel in practice: receipts come from one upstream per batch
        if self.metrics is not None and count:
            self.metrics.unmatched_receipts.labels(min(channels) if channels else "",
                                                   outcome).inc(count)

    def _apply_reports(self, conn: Connection, submissions: Sequence[Submission[Report, datetime]]
                       ) -> list[Effects]:
        writer = StatusWriter(conn, self.report_builder, max(s.context for s in submissions),
                              self.db.notify, match_window=self.match_window)
        writer.apply([r for s in submissions for r in s.units])
        writer.flush()
        return writer.effects.per_submission(len(submissions))

    async def expire_attempts(self, now: datetime, limit: int = 1000) -> int:
        """Attempts past their deadline without success become EXPIRED (err 2)."""
        written = await self.writer.submit(self._expire_op, [limit], now)
        return written.value or 0

    def _expire(self, conn: Connection, submissions: Sequence[Submission[int, datetime]]
                ) -> list[int]:
        now = submissions[0].context
        ids = list(conn.execute(S.expired_attempts, {"now": now, "limit": submissions[0].units[0]}))
        if ids:
            writer = StatusWriter(conn, self.report_builder, now, self.db.notify, "expiry")
            writer.apply([Report(channel=c, status=Status.EXPIRED, message_id=i, err=2,
                                 occurred_at=now) for i, c in ids])
            writer.flush()
        return [len(ids)]

    async def release_expired_leases(self, now: datetime, dead_owners: Sequence[str] = ()
                                     ) -> dict[str, tuple[str, int]]:
        """Attempts leased by a worker that died, or whose lease ran out, go back to the queue.
        Returns lease owner -> (why, how many): "heartbeat lost" for the dead workers,
        "lease expired" for the others (their worker is alive but did not finish in time)."""
        def work(conn: Connection) -> dict[str, tuple[str, int]]:
            condition = attempts.c.lease_until < now
            if dead_owners:
                condition = or_(condition, attempts.c.lease_owner.in_(list(dead_owners)))
            owners = conn.execute(
                select(attempts.c.lease_owner, func.count())
                .where(attempts.c.state == "sending", condition)
                .group_by(attempts.c.lease_owner)).all()
            if not owners:
                return {}
            conn.execute(update(attempts).where(attempts.c.state == "sending", condition)
                         .values(state="due", lease_owner=None, lease_until=None, updated_at=now))
            return {str(owner): ("heartbeat lost" if owner in dead_owners else "lease expired",
                                 int(count)) for owner, count in owners}

        return await self.db.write(work)

    async def sent_attempts(self, channels: Sequence[str]
                            ) -> list[tuple[str, str, str, datetime | None]]:
        """(id, channel, to, sent_at) of the attempts on `channels` that an upstream accepted
        and has not reported on yet."""
        if not channels:
            return []

        def work(conn: Connection) -> list[tuple[str, str, str, datetime | None]]:
            return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
                select(attempts.c.id, attempts.c.channel, attempts.c.to, attempts.c.sent_at)
                .where(attempts.c.state == "sent", attempts.c.channel.in_(list(channels))))]

        return await self.db.read(work)

    async def next_due_time(self) -> datetime | None:
        def work(conn: Connection) -> datetime | None:
            return conn.execute(select(func.min(attempts.c.due_at))
                                .where(attempts.c.state == "due")).scalar()

        return await self.db.read(work)

    async def next_deadline(self) -> datetime | None:
        def work(conn: Connection) -> datetime | None:
            return conn.execute(select(func.min(attempts.c.deadline))
                                .where(attempts.c.state.in_(("due", "sent")))).scalar()

        return await self.db.read(work)

    async def rematch_unmatched(self, now: datetime, drop_before: datetime | None = None) -> int:
        """Retry parked receipts whose ref has been stored since (by another process, in the
        race of the two writes), each only within the match window after its new holder's
        submit began; and drop those parked before `drop_before` (default: the match window
        ago), which no message claimed. Returns how many refs were retried."""
        drop_before = drop_before if drop_before is not None else now - self.match_window

        def work(conn: Connection) -> tuple[int, int, set[str], dict[str, int]]:
            rows = conn.execute(
                select(unmatched_reports.c.channel, unmatched_reports.c.ref, attempts.c.sent_at)
                .join(provider_refs, (provider_refs.c.channel == unmatched_reports.c.channel)
                      & (provider_refs.c.ref == unmatched_reports.c.ref))
                .join(attempts, attempts.c.id == provider_refs.c.attempt_id)
                .limit(1000)
            ).all()
            writer = StatusWriter(conn, self.report_builder, now, self.db.notify,
                                  match_window=self.match_window)
            if rows:
                writer.rematch([(r[0], r[1]) for r in rows],
                               since={(r[0], r[1]): r[2] for r in rows})
                writer.flush()
            expired: dict[str, int] = {str(r[0]): int(r[1]) for r in conn.execute(
                select(unmatched_reports.c.channel, func.count())
                .where(unmatched_reports.c.created_at < drop_before)
                .group_by(unmatched_reports.c.channel)).all()}
            if expired:
                conn.execute(delete(unmatched_reports)
                             .where(unmatched_reports.c.created_at < drop_before))
            return len(rows), writer.dropped, {r[0] for r in rows}, expired

        retried, dropped, channels, expired = await self.db.write(work)
        self._count_unmatched("dropped", channels, dropped)
        for channel, count in sorted(expired.items()):
            self._count_unmatched("expired", {channel}, count)
            self._unmatched_log.warning(
                "%d %s receipt(s) matched no message within %.0fs of arriving; dropped them",
                count, channel, self.match_window.total_seconds())
        return retried

    async def purge_provider_refs(self, before: datetime, limit: int = 5000) -> int:
        """Forget upstream ids of attempts that ended before `before` (or whose message was
        deleted), a bounded batch at a time."""
        def work(conn: Connection) -> int:
            keys = [(r[0], r[1]) for r in conn.execute(
                select(provider_refs.c.channel, provider_refs.c.ref)
                .select_from(provider_refs.outerjoin(attempts,
                                                     attempts.c.id == provider_refs.c.attempt_id))
                .where(or_(attempts.c.id.is_(None),
                           and_(attempts.c.state == "done", attempts.c.updated_at < before)))
                .limit(limit))]
            if not keys:
                return 0
            return int(conn.execute(delete(provider_refs).where(
                tuple_(provider_refs.c.channel, provider_refs.c.ref).in_(keys))).rowcount)

        return await self.db.write(work)

    # webhooks ------------------------------------------------------------------------------

    async def claim_webhooks(self, limit: int, lease_seconds: float, now: datetime, *,
                             per_receiver: int | None = None,
                             excluded_origins: Sequence[str] = ()) -> list[ClaimedWebhook]:
        """Lease due webhooks; a report waits while an earlier one of the same message is pending,
        so that each message's reports arrive in order. At most `per_receiver` go to one
        receiver (host:port); rows under `excluded_origins` (receivers that are full) are left
        alone, so a receiver's backlog is not claimed just to be put back."""
        claim = WebhookClaim(limit, lease_seconds, per_receiver, tuple(sorted(excluded_origins)))
        written = await self.writer.submit(self._claim_webhooks_op, [claim], now)
        return written.value or []

    @staticmethod
    def _claim_webhooks(conn: Connection, submissions: Sequence[Submission[WebhookClaim, datetime]]
                        ) -> list[list[ClaimedWebhook]]:
        now, claim = submissions[0].context, submissions[0].units[0]
        candidates = conn.execute(S.claim_webhook_candidates(claim.excluded_origins),
                                  {"now": now, "limit": claim.limit}).all()
        taken: dict[str, int] = {}
        ids: list[int] = []
        for wid, url in candidates:
            receiver = receiver_host(url)
            if claim.per_receiver is not None and taken.get(receiver, 0) >= claim.per_receiver:
                continue
            taken[receiver] = taken.get(receiver, 0) + 1
            ids.append(wid)
        if not ids:
            return [[]]
        rows = conn.execute(S.lease_webhooks, {
            "ids": ids, "lease_until": now + timedelta(seconds=claim.lease_seconds)})
        return [sorted((ClaimedWebhook(id=r[0], account_id=r[1], kind=r[2], url=r[3],
                                       body=bytes(r[4]), headers=r[5] or {}, tries=r[6])
                        for r in rows), key=lambda w: w.id)]

    async def finish_webhooks(self, results: Sequence[WebhookResult], now: datetime) -> None:
        if not results:
            return
        written = await self.writer.submit(self._webhook_results_op, results, now)
        for result, error in written.refused:
            self._refused("webhook_result", f"the result of webhook {result.id}", error,
                          "it is tried again when its lease runs out")

    @staticmethod
    def _finish_webhooks(conn: Connection,
                         submissions: Sequence[Submission[WebhookResult, datetime]]) -> list[None]:
        for submission in submissions:
            now = submission.context
            by_status: dict[int | None, list[int]] = {}
            for r in submission.units:
                if r.delivered:
                    by_status.setdefault(r.status, []).append(r.id)
            for status, done in by_status.items():
                conn.execute(S.webhooks_delivered, {"ids": done, "now": now, "status": status})
            failed = [r for r in submission.units if not r.delivered]
            if failed:
                conn.execute(S.webhooks_failed, [
                    {"wid": r.id, "new_state": "dead" if r.give_up else "pending",
                     "inc": 0 if r.deferred else 1,
                     "next_try": now + timedelta(seconds=r.retry_in),
                     "message": (r.error or "")[:500], "status": r.status} for r in failed])
        return [None] * len(submissions)

    async def next_webhook_time(self, now: datetime, excluded_origins: Sequence[str] = ()
                                ) -> datetime | None:
        """When the next webhook the claim would take falls due: leased ones, those waiting for
        an earlier report of their message and those under `excluded_origins` do not count."""
        statement = S.next_claimable_webhook(tuple(sorted(excluded_origins)))

        def work(conn: Connection) -> datetime | None:
            return conn.execute(statement, {"now": now}).scalar()

        return await self.db.read(work)

    async def webhook_counts(self) -> dict[str, int]:
        def work(conn: Connection) -> dict[str, int]:
            rows = conn.execute(select(webhooks.c.state, func.count())
                                .group_by(webhooks.c.state)).all()
            return {r[0]: int(r[1]) for r in rows}

        return await self.db.read(work)

    # inbound -------------------------------------------------------------------------------

    async def store_inbound(
        self, messages: Sequence[Inbound], build: Callable[[str, Inbound, Account], WebhookDraft | None],
        now: datetime,
    ) -> list[str]:
        """Store inbound messages and queue their webhooks; the account is the one owning the
        recipient number. Returns the new message ids."""
        owners = await self._owners(list({m.recipient for m in messages}))
        ids: list[str] = []
        rows: list[dict[str, Any]] = []
        drafts: list[tuple[int, str, WebhookDraft]] = []
        for message in messages:
            message_id = str(uuid.uuid4())
            ids.append(message_id)
            account = owners.get(message.recipient)
            rows.append({"id": message_id, "account_id": account.id if account else None,
                         "channel": message.channel, "sender": message.sender,
                         "recipient": message.recipient, "text": message.text,
                         "received_at": message.received_at})
            if account is not None:
                draft = build(message_id, message, account)
                if draft is not None:
                    drafts.append((account.id, message_id, draft))

        units = [(row, [d for d in drafts if d[1] == row["id"]]) for row in rows]
        written = await self.writer.submit(self._inbound_op, units, now)
        refused = {row["id"] for (row, _), _error in written.refused}
        for (row, _), error in written.refused:
            self._refused("inbound", f"inbound message {row['id']} on {row['channel']}", error,
                          "dropping it")
        for row in rows:
            if row["account_id"] is None and row["id"] not in refused:
                # kept, without an account: the operator sees it; nobody else is told
                self._unowned_log.warning(
                    "inbound %s message %s from %s to %s: no account owns that number; stored "
                    "without an account", row["channel"], row["id"], row["sender"],
                    row["recipient"])
                if self.metrics is not None:
                    self.metrics.unowned_inbound.labels(row["channel"]).inc()
        return ids

    def _store_inbound(self, conn: Connection,
                       submissions: Sequence[Submission[InboundUnit, datetime]]) -> list[None]:
        conn.execute(insert(inbound_messages), [row for s in submissions for row, _ in s.units])
        for submission in submissions:
            queued = [draft for _, unit_drafts in submission.units for draft in unit_drafts]
            if queued:
                enqueue_webhooks(conn, queued, submission.context)
                self.db.notify(conn, "webhooks")
        return [None] * len(submissions)

    async def _owners(self, recipients: list[str]) -> dict[str, Account]:
        """recipient -> the account owning it, registered with or without its '+'."""
        keys = {key: recipient for recipient in recipients for key in number_keys(recipient)}

        def work(conn: Connection) -> list[tuple[str, int]]:
            return [(r[0], r[1]) for r in conn.execute(
                select(inbound_numbers.c.number, inbound_numbers.c.account_id)
                .where(inbound_numbers.c.number.in_(list(keys))))]

        owners: dict[str, Account] = {}
        # the recipient's own spelling wins over another form of it
        for number, account_id in sorted(await self.db.read(work),
                                         key=lambda row: row[0] != keys[row[0]]):
            account = await self.account_by_id(account_id)
            if account is not None:
                owners.setdefault(keys[number], account)
        return owners

    async def add_fragments(self, fragments: Sequence[Fragment]) -> list[Inbound]:
        """Keep parts of concatenated messages; return the messages that are now complete."""
        def work(conn: Connection) -> list[Inbound]:
            conn.execute(insert(inbound_fragments), [
                {"group_key": _group_key(f), "total": f.total, "seq": f.seq, "text": f.text,
                 "received_at": f.received_at} for f in fragments])
            complete: list[Inbound] = []
            for fragment in {_group_key(f): f for f in fragments}.values():
                key = _group_key(fragment)
                parts = conn.execute(select(inbound_fragments.c.seq, inbound_fragments.c.text)
                                     .where(inbound_fragments.c.group_key == key)
                                     .order_by(inbound_fragments.c.seq)).all()
                by_seq = {seq: text for seq, text in parts}
                if len(by_seq) >= fragment.total:
                    conn.execute(delete(inbound_fragments)
                                 .where(inbound_fragments.c.group_key == key))
                    complete.append(Inbound(fragment.channel, fragment.sender, fragment.recipient,
                                            "".join(by_seq[s] for s in sorted(by_seq)),
                                            fragment.received_at))
            return complete

        return await self.db.write(work)

    async def take_stale_fragments(self, before: datetime) -> list[Inbound]:
        """Groups whose siblings never came: joined from what arrived, rather than lost."""
        def work(conn: Connection) -> list[Inbound]:
            keys = list(conn.execute(select(inbound_fragments.c.group_key)
                                     .group_by(inbound_fragments.c.group_key)
                                     .having(func.max(inbound_fragments.c.received_at) < before))
                        .scalars())
            messages: list[Inbound] = []
            for key in keys:
                parts = conn.execute(select(inbound_fragments.c.seq, inbound_fragments.c.text,
                                            inbound_fragments.c.received_at)
                                     .where(inbound_fragments.c.group_key == key)
                                     .order_by(inbound_fragments.c.seq)).all()
                conn.execute(delete(inbound_fragments).where(inbound_fragments.c.group_key == key))
                channel, sender, recipient = json.loads(key)[:3]
                messages.append(Inbound(channel, sender, recipient,
                                        "".join(p[1] for p in parts), parts[0][2]))
            return messages

        return await self.db.write(work)

    # subscribers ---------------------------------------------------------------------------

    async def remember_subscriber(self, provider: str, phone: str, address: str,
                                  now: datetime) -> None:
        def work(conn: Connection) -> None:
            changed = conn.execute(update(subscribers).where(
                subscribers.c.provider == provider, subscribers.c.phone == phone,
            ).values(address=address, updated_at=now)).rowcount
            if not changed:
                conn.execute(insert(subscribers).values(provider=provider, phone=phone,
                                                        address=address, updated_at=now))

        await self.db.write(work)

    async def lookup_subscribers(self, provider: str, phones: Sequence[str]) -> dict[str, str]:
        def work(conn: Connection) -> dict[str, str]:
            rows = conn.execute(select(subscribers.c.phone, subscribers.c.address).where(
                subscribers.c.provider == provider, subscribers.c.phone.in_(list(phones))))
            return {r[0]: r[1] for r in rows}

        return await self.db.read(work)

    # workers -------------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, now: datetime, stale_before: datetime) -> list[str]:
        """Record that this worker is alive; return the workers whose heartbeat went stale."""
        def work(conn: Connection) -> list[str]:
            if not conn.execute(update(workers).where(workers.c.id == worker_id)
                                .values(heartbeat_at=now)).rowcount:
                conn.execute(insert(workers).values(id=worker_id, started_at=now,
                                                    heartbeat_at=now))
            dead = list(conn.execute(select(workers.c.id)
                                     .where(workers.c.heartbeat_at < stale_before)).scalars())
            if dead:
                conn.execute(delete(workers).where(workers.c.id.in_(dead)))
            return dead

        return await self.db.write(work)

    async def live_workers(self, since: datetime) -> list[tuple[str, datetime]]:
        """(worker id, last heartbeat) of the workers that beat at or after `since`."""
        def work(conn: Connection) -> list[tuple[str, datetime]]:
            rows = conn.execute(select(workers.c.id, workers.c.heartbeat_at)
                                .where(workers.c.heartbeat_at >= since)
                                .order_by(workers.c.heartbeat_at.desc()))
            return [(str(r[0]), r[1]) for r in rows]

        return await self.db.read(work)

    async def retire_worker(self, worker_id: str) -> None:
        def work(conn: Connection) -> None:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

        await self.db.write(work)


def _content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _group_key(fragment: Fragment) -> str:
    return json.dumps([fragment.channel, fragment.sender, fragment.recipient, fragment.group_key,
                       fragment.total])
