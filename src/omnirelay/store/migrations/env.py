"""Alembic environment: the URL comes from omnirelay's settings via the Config attributes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from omnirelay.store.tables import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through omnirelay.store.migrate, which passes a connection")
run_with(connection)
