"""number lookups: each HLR lookup, charged and counted

Reserved in the chain so that the pieces of work landing in parallel keep one linear history; it
changes nothing until its work fills it in.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
