"""phonebook: blacklist, contacts and groups per account

Each account's blacklist (numbers the dispatcher never hands to a channel), its contacts and
the groups they belong to, for Messente's Phonebook API. Keyed by (account_id, phone) with the
number in E.164, as omnimessages' `to` is, so the send-time check is a primary-key lookup.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

DETAILS = ("email", "first_name", "last_name", "company", "title", "custom", "custom2", "custom3",
           "custom4")


def upgrade() -> None:
    op.create_table(
        'phonebook_blacklist',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'phone'),
    )
    op.create_table(
        'phonebook_contacts',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=32), nullable=False),
        *(sa.Column(name, sa.String(length=255), nullable=True) for name in DETAILS),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'phone'),
    )
    op.create_table(
        'phonebook_groups',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_phonebook_groups_account', 'phonebook_groups',
                    ['account_id', 'created_at'], unique=False)
    op.create_table(
        'phonebook_members',
        sa.Column('group_id', sa.String(length=36), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['phonebook_groups.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['account_id', 'phone'],
                                ['phonebook_contacts.account_id', 'phonebook_contacts.phone'],
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('group_id', 'phone'),
    )
    op.create_index('ix_phonebook_members_contact', 'phonebook_members',
                    ['account_id', 'phone'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_phonebook_members_contact', table_name='phonebook_members')
    op.drop_table('phonebook_members')
    op.drop_index('ix_phonebook_groups_account', table_name='phonebook_groups')
    op.drop_table('phonebook_groups')
    op.drop_table('phonebook_contacts')
    op.drop_table('phonebook_blacklist')
