"""A fresh test database with the schema already in place, without running Alembic for each test.

Most store-backed tests start from an empty database, and migrating one costs a few dozen DDL
statements each time (on a busy PostgreSQL, about a second). The migrations run once per test
session instead, for real, and each test's empty database gets their result:

- SQLite: a copy (sqlite3's backup) of a file the migrations built;
- PostgreSQL: the statements the migrations sent, as recorded, replayed in one transaction into
  the test's own schema (they name no schema: each test's search_path picks it).

The gateway's own `migrate()` at start still runs and finds the schema at head. The migrations
from nothing are tested where that is the point (tests/store/test_migrations.py, the CLI tests,
the subprocess tests), and on a database that is not empty this does nothing.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import make_url

from omnirelay.store import migrate
from omnirelay.store.database import Database

_sqlite_template: Path | None = None
# (statement, parameters) as psycopg received them while the migrations ran
_postgres_statements: list[tuple[str, Any]] | None = None


def premigrate(database_url: str) -> None:
    """Give an empty (or absent) test database the migrated schema; leave any other alone."""
    if database_url.startswith("sqlite:///"):
        _sqlite(Path(database_url.removeprefix("sqlite:///")))
    elif database_url.startswith("postgresql://"):
        _postgres(database_url)


def _sqlite(path: Path) -> None:
    global _sqlite_template
    if str(path) == ":memory:" or (path.exists() and path.stat().st_size > 0):
        return
    if _sqlite_template is None:
        template = Path(tempfile.mkdtemp(prefix="omnirelay-template-")) / "template.db"
        db = Database(f"sqlite:///{template}")
        try:
            migrate.upgrade(db)
        finally:
            db.dispose()
        _sqlite_template = template
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(_sqlite_template) as source, sqlite3.connect(path) as target:
        source.backup(target)
    source.close()
    target.close()


def _libpq_url(database_url: str) -> str:
    """The URL as psycopg takes it (SQLAlchemy's own query keys, if any, are not libpq's)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)


def _postgres(database_url: str) -> None:
    global _postgres_statements
    with psycopg.connect(_libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_catalog.pg_tables "
                           "WHERE schemaname = current_schema()").fetchone()
        if row is None or row[0] != 0:
            return
        if _postgres_statements is None:
            _postgres_statements = _record_migrations(database_url)
            return  # the recording migrated this database itself
        with conn.transaction(), conn.pipeline():
            for statement, parameters in _postgres_statements:
                conn.execute(statement, parameters)


def _record_migrations(database_url: str) -> list[tuple[str, Any]]:
    recorded: list[tuple[str, Any]] = []
    db = Database(database_url)

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               executemany: bool) -> None:
        assert not executemany, "a migration's executemany is not recorded"
        recorded.append((statement, parameters or None))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()
    return recorded
