"""The schema, as SQLAlchemy Core tables. The Alembic migrations create exactly this.

Times are stored as naive UTC datetimes on both SQLite and PostgreSQL, so comparisons and ordering
behave the same on both.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for the hot tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("api_username", String(100), nullable=False, unique=True),
    # Secrets are needed in clear to sign webhooks, so they are encrypted (not hashed) under the
    # server key; see omnirelay.core.secrets.
    Column("api_password_enc", Text, nullable=False),
    Column("twilio_account_sid", String(64), nullable=False, unique=True),
    Column("twilio_auth_token_enc", Text, nullable=False),
    Column("inbound_secret_enc", Text, nullable=False),
    Column("default_sender", String(64), nullable=False),
    Column("dlr_url", Text, nullable=True),
    Column("inbound_url", Text, nullable=True),
    Column("replacements", JSON, nullable=True),
    # active; disabled (credentials refused, can be enabled again); deleted (names freed,
    # secrets scrubbed, its messages kept until retention purges them)
    Column("state", String(16), nullable=False, server_default=text("'active'")),
    Column("created_at", DateTime, nullable=False),
    # Rate limits (omnirelay.ratelimits), per second; NULL is unlimited. max_rps: omnimessages
    # accepted; max_send_rps: attempts handed to channels.
    Column("max_rps", Integer, nullable=True),
    Column("max_send_rps", Integer, nullable=True),
)

# Each limited account's shared budget, per kind ("accept", "send"): the GCRA theoretical
# arrival time in microseconds since the epoch, so every process on one database spends one
# budget (store.ratelimits).
rate_budgets = Table(
    "rate_budgets",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("tat_us", BigInteger, nullable=False),
    # send only: the last turn handed to an attempt held back, so later ones queue behind it
    Column("horizon_us", BigInteger, nullable=True),
)

inbound_numbers = Table(
    "inbound_numbers",
    metadata,
    Column("number", String(64), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
)

omnimessages = Table(
    "omnimessages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("surface", String(16), nullable=False),  # "messente" or "twilio"
    Column("to", String(32), nullable=False),
    # accepted -> done (the chain ended), or accepted -> canceled
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),  # 0 high, 1 regular, 2 low
    Column("time_to_send", DateTime, nullable=True),
    Column("dlr_url", Text, nullable=True),
    Column("text_store", String(16), nullable=False),
    Column("variants", Integer, nullable=False),  # how many attempts the chain has
    # Surface-specific extras (Twilio StatusCallback, From, ContentRetention, ...).
    Column("extra", JSON, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # The history listings page through these newest first; id breaks ties in created_at.
    Index("ix_omnimessages_account_created", "account_id", "created_at", "id"),
    Index("ix_omnimessages_account_to", "account_id", "to", "created_at", "id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(36), primary_key=True),  # the variant's message_id
    Column(
        "omnimessage_id",
        String(36),
        ForeignKey("omnimessages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("account_id", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("to", String(32), nullable=False),
    Column("content", JSON, nullable=True),  # null once text_store says to forget it
    Column("content_sha256", String(64), nullable=True),
    Column("validity_seconds", Integer, nullable=False),
    # waiting (not its turn) -> due -> sending (leased) -> sent (awaiting receipt) -> done;
    # or waiting -> skipped (an earlier variant succeeded) / canceled.
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("due_at", DateTime, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Column("deadline", DateTime, nullable=True),  # when it expires unless it succeeded
    Column("status", String(16), nullable=True),
    Column("err", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("parts_count", Integer, nullable=True),
    Column("tries", Integer, nullable=False, server_default=text("0")),
    Column("sent_at", DateTime, nullable=True),
    Column("updated_at", DateTime, nullable=False),
    # What submitting it was charged (store.pricing): its country (alpha-2), the price of a
    # part in micro-units (core.money), the parts paid for; null until claimed, or refunded.
    Column("country", String(2), nullable=True),
    Column("part_price_micros", BigInteger, nullable=True),
    Column("charged_parts", Integer, nullable=True),
    UniqueConstraint("omnimessage_id", "seq", name="uq_attempts_omnimessage_seq"),
    Index("ix_attempts_due", "state", "priority", "due_at"),
    Index("ix_attempts_deadline", "state", "deadline"),
    Index("ix_attempts_lease", "state", "lease_until"),
    Index("ix_attempts_account_sent", "account_id", "sent_at"),  # POST /statistics/reports
)

status_events = Table(
    "status_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("attempt_id", String(36), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("err", Integer, nullable=True),
    # what said so: submit, receipt or expiry (null on rows older than the column)
    Column("source", String(16), nullable=True),
    Column("created_at", DateTime, nullable=False),
)

# Upstream ids of an attempt (one per SMS part), so receipts that carry only the upstream's id
# find their attempt, whichever connection or process receives them.
provider_refs = Table(
    "provider_refs",
    metadata,
    Column("channel", String(16), primary_key=True),
    Column("ref", String(128), primary_key=True),
    Column("attempt_id", String(36), nullable=False, index=True),
    Column("part", Integer, nullable=False),
    Column("status", String(16), nullable=True),
    Column("err", Integer, nullable=True),
)

# Receipts that arrived before their provider ref was stored (a receipt can overtake the
# submit response). They are matched when the ref is recorded, never dropped.
unmatched_reports = Table(
    "unmatched_reports",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),
    Column("ref", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("err", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("occurred_at", DateTime, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Index("ix_unmatched_reports_ref", "channel", "ref"),
)

# Chat users who made themselves reachable (shared their phone number with a bot).
subscribers = Table(
    "subscribers",
    metadata,
    Column("provider", String(64), primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("address", String(128), nullable=False),  # Viber user id, Telegram chat id
    Column("updated_at", DateTime, nullable=False),
)

# Parts of concatenated inbound messages waiting for their siblings.
inbound_fragments = Table(
    "inbound_fragments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("group_key", String(256), nullable=False, index=True),
    Column("total", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("received_at", DateTime, nullable=False),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=True),
    Column("channel", String(16), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Index("ix_inbound_messages_account_received", "account_id", "received_at", "id"),
)

# The webhook outbox: every callback we owe a customer, written in the same transaction as the
# status change that caused it, so reports survive crashes and restarts.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    # Reports sharing an order key are delivered one at a time, in id order.
    Column("order_key", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # dlr, inbound, twilio
    Column("url", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),  # pending, done, dead
    Column("tries", Integer, nullable=False, server_default=text("0")),
    Column("next_try_at", DateTime, nullable=False),
    Column("lease_until", DateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_status", Integer, nullable=True),  # the HTTP status the receiver last answered
    Column("created_at", DateTime, nullable=False),
    Column("done_at", DateTime, nullable=True),
    # id last: the claim walks this index in (next_try_at, id) order and stops at its limit
    Index("ix_webhooks_due", "state", "next_try_at", "id"),
    Index("ix_webhooks_order", "order_key", "id"),
    Index("ix_webhooks_account", "account_id", "id"),  # the outbox listing, newest first
)

# Price lists (core.pricing): account_id NULL is the global list; an account's own rows win over
# it country by country and channel by channel. Money in micro-units (core.money).
prices = Table(
    "prices",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("channel", String(16), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("country", String(100), nullable=False),
    Column("mccmnc", String(6), nullable=False),  # "" for the whole country
    Column("network", String(100), nullable=False),
    Column("price_micros", BigInteger, nullable=False),
    Index("ix_prices_scope", "account_id", "channel", "country_code"),
)

# Prepaid balances; an account without a row is unlimited. The charge subtracts only where the
# balance covers it (store.pricing); the check is the last guard behind that.
balances = Table(
    "balances",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("amount_micros", BigInteger, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    CheckConstraint("amount_micros >= 0", name="ck_balances_not_negative"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
)


# The phonebook, per account: numbers never to send to, contacts and the groups they belong to.
# Numbers are E.164 as `to` is, so the dispatcher's check is an exact match on the primary key.
phonebook_blacklist = Table(
    "phonebook_blacklist",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("created_at", DateTime, nullable=False),
)

phonebook_contacts = Table(
    "phonebook_contacts",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("phone", String(32), primary_key=True),
    *(Column(name, String(255), nullable=True) for name in (
        "email", "first_name", "last_name", "company", "title", "custom", "custom2", "custom3",
        "custom4")),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

phonebook_groups = Table(
    "phonebook_groups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_phonebook_groups_account", "account_id", "created_at"),
)

phonebook_members = Table(
    "phonebook_members",
    metadata,
    Column("group_id", String(36), ForeignKey("phonebook_groups.id", ondelete="CASCADE"),
           primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("phone", String(32), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    ForeignKeyConstraint(["account_id", "phone"],
                         ["phonebook_contacts.account_id", "phonebook_contacts.phone"],
                         ondelete="CASCADE"),
    Index("ix_phonebook_members_contact", "account_id", "phone"),
)

# Idempotency keys (omnirelay.idempotency): the first answer to each (account, key), committed
# in the same transaction as the messages it accepted, replayed to retries within the window.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of the operation and its body
    Column("status", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),  # the answer's bytes, as first sent
    Column("created_at", DateTime, nullable=False),
    Index("ix_idempotency_keys_created", "created_at"),  # the purge, oldest first
)

# The sandbox's WhatsApp message templates (store.whatsapp_templates), per account and WABA id.
whatsapp_templates = Table(
    "whatsapp_templates",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("waba_id", String(32), nullable=False),
    Column("name", String(512), nullable=False),
    Column("language", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column("status", String(24), nullable=False),
    Column("components", JSON, nullable=False),
    Column("search_text", Text, nullable=False),  # the components' texts, lower-cased
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("account_id", "waba_id", "name", "language",
                     name="uq_whatsapp_templates_name"),
    Index("ix_whatsapp_templates_listing", "account_id", "waba_id", "created_at", "id"),
)

# Number lookups (POST /hlr/sync), one row per looked-up number: what it was charged, for the
# balance's refunds and for the statistics report (message type hlr), which reads one range of
# ix_number_lookups_account_time per account and dates.
number_lookups = Table(
    "number_lookups",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("request_id", String(36), nullable=False),
    Column("number", String(32), nullable=False),
    Column("country", String(2), nullable=True),  # ISO alpha-2; NULL: no country's number
    Column("price_micros", BigInteger, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_number_lookups_account_time", "account_id", "created_at"),
)


# Number verification (/verify/*): one row per verification, the PIN only as a keyed hash
# (core/verification.py); the omnimessages that carry its PIN, so that re-sends still scheduled
# are canceled once it is verified; and each destination's wrong PINs in the current window.
verifications = Table(
    "verifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("destination", String(32), nullable=False),
    Column("pin_hash", String(64), nullable=False),
    Column("cookie_hash", String(64), nullable=True),
    Column("ip", String(512), nullable=True),
    Column("wrong_pins", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("verified_at", DateTime, nullable=True),
    Index("ix_verifications_cookie", "account_id", "destination", "cookie_hash"),
    Index("ix_verifications_expires", "expires_at"),  # the retention purge, oldest first
)

verification_sends = Table(
    "verification_sends",
    metadata,
    Column("verification_id", String(36), ForeignKey("verifications.id", ondelete="CASCADE"),
           primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("omnimessage_id", String(36), nullable=False),
    Column("send_at", DateTime, nullable=False),
)

verification_throttles = Table(
    "verification_throttles",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("destination", String(32), primary_key=True),
    Column("window_started_at", DateTime, nullable=False),
    Column("wrong_pins", Integer, nullable=False),
)
