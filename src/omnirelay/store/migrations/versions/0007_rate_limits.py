"""per-account rate limits: the accepted and sent rates an account is held to

accounts.max_rps caps the omnimessages an account may have accepted per second, max_send_rps the
attempts the dispatcher hands to channels for it per second (NULL: unlimited). rate_budgets holds
each limited account's shared budget state (a GCRA theoretical arrival time, microseconds since
the epoch), so that every process on one PostgreSQL spends the same budget, and for sending the
last turn handed to an attempt held back (horizon_us).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_rps', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_send_rps', sa.Integer(), nullable=True))
    op.create_table(
        'rate_budgets',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('tat_us', sa.BigInteger(), nullable=False),
        sa.Column('horizon_us', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'kind'),
    )


def downgrade() -> None:
    op.drop_table('rate_budgets')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('max_send_rps')
        batch_op.drop_column('max_rps')
