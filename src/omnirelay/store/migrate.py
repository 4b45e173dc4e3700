"""Applying the schema migrations (Alembic), from the CLI and at server start.

What can go wrong here is the operator's to fix, so it is raised as one clear `StartupError`: the
database out of reach (address, credentials, name), a schema newer than this code (a newer
omnirelay upgraded it), or a migration the database refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from omnirelay import __version__
from omnirelay.errors import DatabaseUnreachable, SchemaMismatch
from omnirelay.store.database import Database, describe

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The schema's revision before and after `upgrade` (None: there was no schema)."""

    database: str  # the URL without its password
    before: str | None
    after: str | None

    def describe(self) -> str:
        if self.before is None:
            return f"{self.database}: created the schema at revision {self.after}"
        if self.before == self.after:
            return f"{self.database}: already at revision {self.after} (up to date)"
        return f"{self.database}: upgraded the schema from revision {self.before} to {self.after}"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def shown_url(database_url: str) -> str:
    """The URL as it may be printed and logged: without its password."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(the configured database_url)"


def upgrade(db: Database, revision: str = "head") -> Upgrade:
    config = alembic_config()
    # What it did is said once, by the caller; Alembic's own INFO lines would repeat it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        with db.engine.begin() as connection:
            before = _current(connection)
            _check_known(config, before)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            after = _current(connection)
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseUnreachable(connect_failure(db.url, exc)) from exc
    except DBAPIError as exc:
        raise SchemaMismatch(f"{shown_url(db.url)}: the schema migration failed: {describe(exc)}; "
                             "the user in database_url must be allowed to create tables "
                             "(run `omnirelay migrate` as the database's owner)") from exc
    return Upgrade(shown_url(db.url), before, after)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _check_known(config: Config, revision: str | None) -> None:
    if revision is None:
        return
    try:
        ScriptDirectory.from_config(config).get_revision(revision)
    except CommandError:
        raise SchemaMismatch(
            f"the database's schema is at revision {revision}, which omnirelay {__version__} "
            f"does not know (its newest is {head_revision()}): a newer omnirelay upgraded it; "
            "run that version, or restore the backup taken before the upgrade") from None


def connect_failure(database_url: str, exc: BaseException) -> str:
    """One line: which database, what the driver said, and what to check."""
    said = describe(exc).removeprefix("connection failed: ")
    lowered = said.lower()
    if "password" in lowered or "role" in lowered or "authentication" in lowered:
        fix = "check the user and password in database_url"
    elif "database" in lowered and "does not exist" in lowered:
        fix = "create it (createdb NAME) or correct the name in database_url"
    elif "unable to open database file" in lowered:
        fix = "check database_url's path: its directory must exist and be writable"
    else:
        fix = "is the database running and reachable there? check database_url"
    return f"cannot reach the database at {shown_url(database_url)}: {said}; {fix}"


def is_current(db: Database) -> bool:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head
