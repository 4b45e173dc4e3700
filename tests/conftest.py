"""Fixtures: every store-backed test runs on SQLite and on PostgreSQL.

PostgreSQL comes from OMNIRELAY_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/
test). Each test gets its own schema, dropped afterwards. Where no server answers, the PostgreSQL
variants skip with the reason — unless OMNIRELAY_TEST_REQUIRE_POSTGRES=1 (set by .ci/run), where they
fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
)

POSTGRES_URL = os.environ.get("OMNIRELAY_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("OMNIRELAY_TEST_REQUIRE_POSTGRES") == "1"
_postgres_problem: str | None = None
_postgres_checked = False


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    global _postgres_checked, _postgres_problem
    if not _postgres_checked:
        _postgres_checked = True
        try:
            with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            _postgres_problem = f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"
    return _postgres_problem


def _postgres_schema_url() -> Iterator[str]:
    problem = postgres_available()
    if problem is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"OMNIRELAY_TEST_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/omnirelay.db"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_schema_url()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def server(database_url: str) -> Iterator[LiveServer]:
    live = start_live_server(make_settings(database_url))
    yield live
    live.stop()


@pytest.fixture
def account(server: LiveServer):  # type: ignore[no-untyped-def]
    return server.call(create_account(server.runtime))
