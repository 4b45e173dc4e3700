"""pricing: price lists, balances, the charge of each attempt, the statistics index

prices holds the global list (account_id NULL) and accounts' own lists; balances the prepaid
balances (no row: unlimited), never below zero. Each attempt records what its submission was
charged: its country, the price of a part, the parts charged. ix_attempts_account_sent serves
POST /statistics/reports as one index range per account and date range.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'prices',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=True),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('country_code', sa.String(length=2), nullable=False),
        sa.Column('country', sa.String(length=100), nullable=False),
        sa.Column('mccmnc', sa.String(length=6), nullable=False),
        sa.Column('network', sa.String(length=100), nullable=False),
        sa.Column('price_micros', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_prices_scope', 'prices', ['account_id', 'channel', 'country_code'],
                    unique=False)
    op.create_table(
        'balances',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('amount_micros', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint('amount_micros >= 0', name='ck_balances_not_negative'),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id'),
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('country', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('part_price_micros', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('charged_parts', sa.Integer(), nullable=True))
    op.create_index('ix_attempts_account_sent', 'attempts', ['account_id', 'sent_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_attempts_account_sent', table_name='attempts')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('charged_parts')
        batch_op.drop_column('part_price_micros')
        batch_op.drop_column('country')
    op.drop_table('balances')
    op.drop_index('ix_prices_scope', table_name='prices')
    op.drop_table('prices')
