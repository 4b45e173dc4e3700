"""number verification: PIN sessions, hashed, with their tries

verifications holds one row per /verify/start (the PIN only as a keyed hash, the wrong PINs typed,
the expiry, when it was verified); verification_sends the omnimessages that carry its PIN (the
first send and the scheduled re-sends); verification_throttles each destination's wrong PINs in
the current window, per account.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'verifications',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('destination', sa.String(length=32), nullable=False),
        sa.Column('pin_hash', sa.String(length=64), nullable=False),
        sa.Column('cookie_hash', sa.String(length=64), nullable=True),
        sa.Column('ip', sa.String(length=512), nullable=True),
        sa.Column('wrong_pins', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('verified_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_verifications_cookie', 'verifications',
                    ['account_id', 'destination', 'cookie_hash'], unique=False)
    op.create_index('ix_verifications_expires', 'verifications', ['expires_at'], unique=False)
    op.create_table(
        'verification_sends',
        sa.Column('verification_id', sa.String(length=36), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('omnimessage_id', sa.String(length=36), nullable=False),
        sa.Column('send_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['verification_id'], ['verifications.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('verification_id', 'seq'),
    )
    op.create_table(
        'verification_throttles',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('destination', sa.String(length=32), nullable=False),
        sa.Column('window_started_at', sa.DateTime(), nullable=False),
        sa.Column('wrong_pins', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'destination'),
    )


def downgrade() -> None:
    op.drop_table('verification_throttles')
    op.drop_table('verification_sends')
    op.drop_index('ix_verifications_expires', table_name='verifications')
    op.drop_index('ix_verifications_cookie', table_name='verifications')
    op.drop_table('verifications')
