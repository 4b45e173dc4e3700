"""The migrations create exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from omnirelay.store import migrate
from omnirelay.store.database import Database
from omnirelay.store.tables import metadata


def test_migrations_match_the_declared_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert not migrate.is_current(db)
        migrate.upgrade(db)
        assert migrate.is_current(db)
        migrate.upgrade(db)  # applying again is harmless
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
    finally:
        db.dispose()
