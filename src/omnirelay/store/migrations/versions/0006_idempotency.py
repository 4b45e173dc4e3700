"""idempotency keys: the first response of each (account, key), kept for its window

Reserved in the chain so that the pieces of work landing in parallel keep one linear history; it
changes nothing until its work fills it in.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
