"""webhooks lose the headers column

Every writer stored `{}` there and nothing read it: a webhook's headers (its signature) are made
when it is sent, from the account's current secret, so a stored copy could only go stale. The
column cost a JSON value per queued webhook and a column per claim.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('headers')


def downgrade() -> None:
    # server_default so that the rows queued meanwhile get the `{}` every writer stored
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('headers', sa.JSON(), nullable=False,
                                      server_default=sa.text("'{}'")))
