"""number lookups: each HLR lookup, charged and counted

number_lookups holds one row per looked-up number with its country and what it was charged;
ix_number_lookups_account_time serves the statistics report's hlr counts as one index range per
account and date range.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'number_lookups',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.String(length=36), nullable=False),
        sa.Column('number', sa.String(length=32), nullable=False),
        sa.Column('country', sa.String(length=2), nullable=True),
        sa.Column('price_micros', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_number_lookups_account_time', 'number_lookups',
                    ['account_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_number_lookups_account_time', table_name='number_lookups')
    op.drop_table('number_lookups')
