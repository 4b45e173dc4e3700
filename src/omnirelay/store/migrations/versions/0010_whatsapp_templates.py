"""WhatsApp templates kept by the sandbox template store

Reserved in the chain so that the pieces of work landing in parallel keep one linear history; it
changes nothing until its work fills it in.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
