"""history: listing indexes, the source of each status event, account states

The history listings (GET /v1/omnimessages, GET /v1/inbound, GET /v1/webhooks) page an account's rows newest first
by (created_at, id); these indexes let each page be one index range scan whatever the table's
size. accounts.state lets the operator disable or delete an account.
status_events.source says what reported a status (submit, receipt, expiry), for the
per-message timeline.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_omnimessages_account_created', table_name='omnimessages')
    op.create_index('ix_omnimessages_account_created', 'omnimessages',
                    ['account_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_omnimessages_account_to', 'omnimessages',
                    ['account_id', 'to', 'created_at', 'id'], unique=False)
    op.create_index('ix_inbound_messages_account_received', 'inbound_messages',
                    ['account_id', 'received_at', 'id'], unique=False)
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=16),
                                      server_default=sa.text("'active'"), nullable=False))
    op.create_index('ix_webhooks_account', 'webhooks', ['account_id', 'id'], unique=False)
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_status', sa.Integer(), nullable=True))
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.drop_column('source')
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('last_status')
    op.drop_index('ix_webhooks_account', table_name='webhooks')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('state')
    op.drop_index('ix_inbound_messages_account_received', table_name='inbound_messages')
    op.drop_index('ix_omnimessages_account_to', table_name='omnimessages')
    op.drop_index('ix_omnimessages_account_created', table_name='omnimessages')
    op.create_index('ix_omnimessages_account_created', 'omnimessages',
                    ['account_id', 'created_at'], unique=False)
