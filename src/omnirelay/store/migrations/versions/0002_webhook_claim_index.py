"""webhook claim index ends in id

The claim orders due webhooks by (next_try_at, id). With an index on (state, next_try_at) alone
PostgreSQL sorted every pending webhook on each claim (30 ms with 9,000 pending, serialising the
writer behind it); with id in the index it walks the index and stops after the limit (0.4 ms).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_webhooks_due', table_name='webhooks')
    op.create_index('ix_webhooks_due', 'webhooks', ['state', 'next_try_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhooks_due', table_name='webhooks')
    op.create_index('ix_webhooks_due', 'webhooks', ['state', 'next_try_at'], unique=False)
