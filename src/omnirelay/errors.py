"""Exceptions shared across layers.

A `StartupError` is an expected failure at start that the operator fixes: its message is one line
that names the cause and the fix, and the CLI prints just that line (a traceback only with
`--debug`) and exits with `exit_status`.
"""

from __future__ import annotations


class StartupError(Exception):
    """An expected failure at start (a database out of reach, a port in use); the message names
    the cause and the fix."""

    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(StartupError, ValueError):
    """The configuration is invalid; the message says which setting and why. `section` (None at
    the top level) and `key` say where, when it is one setting; `origin` is where it was read
    from (the file, or the environment variable), once known."""

    exit_status = 2

    def __init__(self, message: str, *, section: str | None = None, key: str | None = None,
                 origin: str | None = None) -> None:
        super().__init__(message)
        self.section = section
        self.key = key
        self.origin = origin

    def located(self, origin: str | None) -> ConfigError:
        """The same error, said to come from `origin` (kept if it already has one)."""
        if origin is None or self.origin is not None:
            return self
        return ConfigError(self.message, section=self.section, key=self.key, origin=origin)

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}" if self.origin else self.message


class DatabaseUnreachable(StartupError):
    """The database refused the connection, or is not there: wrong address, credentials or
    name."""


class SchemaMismatch(StartupError):
    """The database's schema is at a revision this code cannot serve (newer than the code), or a
    migration failed."""
