"""per-account rate limits: the accepted and sent rates an account is held to

Reserved in the chain so that the pieces of work landing in parallel keep one linear history; it
changes nothing until its work fills it in.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
