"""number verification: PIN sessions, hashed, with their tries

Reserved in the chain so that the pieces of work landing in parallel keep one linear history; it
changes nothing until its work fills it in.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
