"""WhatsApp templates kept by the sandbox template store

The sandbox's WhatsApp message templates, per account and WABA id, for Messente's WhatsApp
Templates API when no Cloud API is configured. Ids are random digits, as Meta's are; a name and
language are unique within an account's WABA, as they are at Meta.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'whatsapp_templates',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('waba_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=512), nullable=False),
        sa.Column('language', sa.String(length=16), nullable=False),
        sa.Column('category', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=24), nullable=False),
        sa.Column('components', sa.JSON(), nullable=False),
        sa.Column('search_text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'waba_id', 'name', 'language',
                            name='uq_whatsapp_templates_name'),
    )
    op.create_index('ix_whatsapp_templates_listing', 'whatsapp_templates',
                    ['account_id', 'waba_id', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_whatsapp_templates_listing', table_name='whatsapp_templates')
    op.drop_table('whatsapp_templates')
