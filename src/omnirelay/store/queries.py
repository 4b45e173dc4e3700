"""The store's front door: one object that answers every query omnirelay runs, composed of one
aggregate per concept, each owning its SQL (SQLAlchemy Core on SQLite and PostgreSQL alike):

- accounts (store.accounts): accounts, their sealed secrets, the inbound numbers they own;
- omnimessages (store.omnimessages): accepting, reading, canceling, forgetting, deleting;
- dispatch (store.dispatch): the delivery queue, send outcomes, status reports, expiry, leases;
- outbox (store.outbox): the webhooks waiting to be delivered;
- inbox (store.inbound): inbound messages and their fragments, chat subscribers;
- workers (store.workers): heartbeats of the processes sharing the database.

Each public method is one transaction. Work queues (due attempts, webhooks) are claimed in batches
with a lease: `FOR UPDATE SKIP LOCKED` on PostgreSQL lets many processes claim side by side, and a
lease that runs out (its worker died) makes the work claimable again. The aggregates share one
writer per process; each kind of write is an op with its place in a transaction that holds
several kinds: accepts (0), send outcomes (1) before the receipts that may match them (2),
inbound (3), webhook results (4), expiry (5), claims (6), webhook claims (7).
"""

from __future__ import annotations

from datetime import timedelta

from omnirelay.core.secrets import SecretBox
from omnirelay.metrics import Metrics
from omnirelay.store.accounts import Account, Accounts
from omnirelay.store.database import Database
from omnirelay.store.dispatch import BLACKLISTED, CREDIT_REFUSED, Claim, Dispatch
from omnirelay.store.inbound import Inbox
from omnirelay.store.omnimessages import AttemptView, Omnimessages, OmnimessageView
from omnirelay.store.outbox import ClaimedWebhook, Outbox, WebhookResult
from omnirelay.store.transitions import ReportBuilder
from omnirelay.store.workers import Workers
from omnirelay.store.writer import Writer

__all__ = [
    "BLACKLISTED", "CREDIT_REFUSED", "Account", "AttemptView", "Claim", "ClaimedWebhook",
    "OmnimessageView", "Store", "WebhookResult",
]


class Store:
    def __init__(self, db: Database, box: SecretBox, report_builder: ReportBuilder,
                 metrics: Metrics | None = None, receipt_match_window: float = 120.0) -> None:
        self.db = db
        self.box = box
        self.report_builder = report_builder
        self.metrics = metrics
        # a parked receipt may match a submission that began at most this long before it arrived
        self.match_window = timedelta(seconds=receipt_match_window)
        self.writer = Writer(db)
        self.accounts = Accounts(db, box)
        self.omnimessages = Omnimessages(db, self.writer)
        self.dispatch = Dispatch(db, self.writer, report_builder, metrics, self.match_window)
        self.outbox = Outbox(db, self.writer, metrics)
        self.inbox = Inbox(db, self.writer, self.accounts, metrics)
        self.workers = Workers(db)

        # Callers ask the store, not the aggregate; these are the aggregates' own methods.
        accounts = self.accounts
        self.create_account = accounts.create_account
        self.account_by = accounts.account_by
        self.account_by_id = accounts.account_by_id
        self.account_by_name = accounts.account_by_name
        self.account_by_username = accounts.account_by_username
        self.account_by_sid = accounts.account_by_sid
        self.list_accounts = accounts.list_accounts
        self.count_accounts = accounts.count_accounts
        self.update_account = accounts.update_account
        self.delete_account = accounts.delete_account
        self.set_inbound_numbers = accounts.set_inbound_numbers
        self.inbound_numbers_of = accounts.inbound_numbers_of

        messages = self.omnimessages
        self.insert_omnimessages = messages.insert_omnimessages
        self.remembered = messages.remembered
        self.omnimessage = messages.omnimessage
        self.list_omnimessages = messages.list_omnimessages
        self.cancel = messages.cancel
        self.forget_content = messages.forget_content
        self.delete_omnimessage = messages.delete_omnimessage

        dispatch = self.dispatch
        self.claim_due_attempts = dispatch.claim_due_attempts
        self.claim_due = dispatch.claim_due
        self.record_send_outcomes = dispatch.record_send_outcomes
        self.apply_reports = dispatch.apply_reports
        self.expire_attempts = dispatch.expire_attempts
        self.release_expired_leases = dispatch.release_expired_leases
        self.sent_attempts = dispatch.sent_attempts
        self.next_due_time = dispatch.next_due_time
        self.next_deadline = dispatch.next_deadline
        self.rematch_unmatched = dispatch.rematch_unmatched
        self.purge_provider_refs = dispatch.purge_provider_refs

        outbox = self.outbox
        self.claim_webhooks = outbox.claim_webhooks
        self.finish_webhooks = outbox.finish_webhooks
        self.next_webhook_time = outbox.next_webhook_time
        self.webhook_counts = outbox.webhook_counts

        inbox = self.inbox
        self.store_inbound = inbox.store_inbound
        self.add_fragments = inbox.add_fragments
        self.take_stale_fragments = inbox.take_stale_fragments
        self.remember_subscriber = inbox.remember_subscriber
        self.lookup_subscribers = inbox.lookup_subscribers

        workers = self.workers
        self.heartbeat = workers.heartbeat
        self.live_workers = workers.live_workers
        self.retire_worker = workers.retire_worker
