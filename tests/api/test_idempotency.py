"""Idempotency-Key on Messente's sends, through the official SDK and httpx, on SQLite and
PostgreSQL: replays, a different body, accounts, the window and its purge, and retries racing
a first request that is still being stored — in one process and across two."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from messente_api import (
    SMS,
    ApiClient,
    ApiException,
    BulkMessagingApi,
    BulkOmnimessage,
    Configuration,
    Omnimessage,
    OmnimessageApi,
    OmnimessageMessagesInner,
)
from sqlalchemy import func, select, update

from omnirelay.config import load_settings
from omnirelay.core.timefmt import utcnow
from omnirelay.errors import ConfigError
from omnirelay.runtime import Runtime
from omnirelay.store.retention import Retention
from omnirelay.store.tables import idempotency_keys, omnimessages
from tests.support import LiveServer, create_account, make_settings, start_live_server, wait_until

TO = "+37255512345"
BODY = {"to": TO, "messages": [{"channel": "sms", "text": "hello"}]}


def sdk(server: LiveServer, account: Any, key: str | None = None) -> ApiClient:
    config = Configuration(host=server.base_url + "/v1")
    config.username = account.api_username
    config.password = account.api_password
    client = ApiClient(config)
    if key is not None:
        client.set_default_header("Idempotency-Key", key)
    return client


def sms(text: str = "hello") -> Omnimessage:
    return Omnimessage(to=TO, messages=[OmnimessageMessagesInner(SMS(text=text))])


def replayed(response: Any) -> str | None:
    """The SDK's ApiResponse keeps the headers as sent: lower-case names."""
    return {k.lower(): v for k, v in (response.headers or {}).items()}.get("idempotent-replayed")


def stored(server: LiveServer, account_id: int | None = None) -> int:
    query = select(func.count()).select_from(omnimessages)
    if account_id is not None:
        query = query.where(omnimessages.c.account_id == account_id)
    with server.runtime.db.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def keys(server: LiveServer) -> int:
    with server.runtime.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(idempotency_keys)).scalar_one())


def post(server: LiveServer, account: Any, key: str | None, body: Any = BODY,
         path: str = "/v1/omnimessage") -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return httpx.post(server.base_url + path, json=body, headers=headers, timeout=60,
                      auth=(account.api_username, account.api_password))


def test_retry_with_the_same_key_answers_the_first_response_and_sends_once(
        server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account, key="order-1234"))
    first = api.send_omnimessage_with_http_info(sms())
    again = api.send_omnimessage_with_http_info(sms())
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.raw_data == first.raw_data
    assert again.data.omnimessage_id == first.data.omnimessage_id
    assert again.data.messages[0].message_id == first.data.messages[0].message_id
    assert replayed(first) is None and replayed(again) == "true"
    assert stored(server) == 1
    # Key order and whitespace are not part of the request: still the same one.
    raw = httpx.post(server.base_url + "/omnimessage", headers={
        "Idempotency-Key": "order-1234", "Content-Type": "application/json"},
        content=b'{ "messages": [{"text": "hello", "channel": "sms"}], "to": "' + TO.encode()
        + b'" }', auth=(account.api_username, account.api_password))
    assert (raw.status_code, raw.content) == (201, first.raw_data)
    # Without a key every request is new.
    plain = OmnimessageApi(sdk(server, account))
    assert plain.send_omnimessage(sms()).omnimessage_id != first.data.omnimessage_id
    assert stored(server) == 2


def test_the_same_key_with_another_body_is_422_and_sends_nothing(
        server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account, key="k-1"))
    api.send_omnimessage(sms("hello"))
    with pytest.raises(ApiException) as refused:
        api.send_omnimessage(sms("hello again"))
    assert refused.value.status == 422
    error = json.loads(refused.value.body)["errors"][0]
    assert (error["code"], error["source"]) == ("105", "Idempotency-Key")
    assert "different request" in error["detail"]
    # The same key on the bulk route is another request too.
    bulk = post(server, account, "k-1", {"messages": [BODY]}, "/v1/omnimessages")
    assert bulk.status_code == 422
    assert stored(server) == 1


def test_keys_are_per_account(server: LiveServer, account: Any) -> None:
    other = server.call(create_account(server.runtime, "other"))
    mine = OmnimessageApi(sdk(server, account, key="shared")).send_omnimessage(sms())
    theirs_response = OmnimessageApi(sdk(server, other, key="shared")
                                     ).send_omnimessage_with_http_info(sms())
    assert replayed(theirs_response) is None
    assert theirs_response.data.omnimessage_id != mine.omnimessage_id
    assert (stored(server, account.id), stored(server, other.id)) == (1, 1)


@pytest.mark.parametrize(("value", "problem"), [
    ("", "empty"),
    ("x" * 256, "at most 255"),
    ("caf\u00e9", "printable ASCII"),
    ("tab\there", "printable ASCII"),
])
def test_an_unusable_key_is_refused_in_messentes_format(
        server: LiveServer, account: Any, value: str, problem: str) -> None:
    answer = httpx.post(server.base_url + "/v1/omnimessage", json=BODY,
                        headers=[("Idempotency-Key", value.encode("latin-1"))],
                        auth=(account.api_username, account.api_password))
    assert answer.status_code == 400
    error = answer.json()["errors"][0]
    assert (error["code"], error["source"]) == ("105", "Idempotency-Key")
    assert problem in error["detail"]
    assert stored(server) == 0


def test_two_key_headers_are_refused(server: LiveServer, account: Any) -> None:
    answer = httpx.post(server.base_url + "/v1/omnimessages", json={"messages": [BODY]},
                        headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
                        auth=(account.api_username, account.api_password))
    assert answer.status_code == 400
    assert "one Idempotency-Key header" in answer.json()["errors"][0]["detail"]
    assert (stored(server), keys(server)) == (0, 0)


def test_a_refused_first_request_leaves_the_key_free(server: LiveServer, account: Any) -> None:
    bad = post(server, account, "k-2", {"to": "not a number", "messages": BODY["messages"]})
    assert bad.status_code == 400
    assert keys(server) == 0
    good = post(server, account, "k-2")
    assert good.status_code == 201 and "idempotent-replayed" not in good.headers
    again = post(server, account, "k-2")
    assert again.content == good.content and again.headers["idempotent-replayed"] == "true"
    assert stored(server) == 1


def test_bulk_replays_its_whole_answer_including_refused_items(
        server: LiveServer, account: Any) -> None:
    api = BulkMessagingApi(sdk(server, account, key="bulk-1"))
    bulk = BulkOmnimessage(messages=[sms("one"), Omnimessage(
        to="12", messages=[OmnimessageMessagesInner(SMS(text="two"))])])
    first = api.send_bulk_omnimessage_with_http_info(bulk)
    again = api.send_bulk_omnimessage_with_http_info(bulk)
    assert again.raw_data == first.raw_data
    results = httpx.Response(201, content=first.raw_data).json()["messages"]
    assert "omnimessage_id" in results[0] and "errors" in results[1]
    assert stored(server) == 1
    # A bulk whose every item is refused is still an answer, and replayed as one.
    refused = {"messages": [{"to": "12", "messages": BODY["messages"]}]}
    answers = [post(server, account, "bulk-2", refused, "/omnimessages") for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[1].content == answers[0].content
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert stored(server) == 1


def age_keys(server: LiveServer, by: timedelta) -> None:
    """Make every stored key older (in Python: SQLite has no datetime arithmetic on them)."""
    k = idempotency_keys.c
    with server.runtime.db.engine.begin() as conn:
        for row in conn.execute(select(k.account_id, k.key, k.created_at)).all():
            conn.execute(update(idempotency_keys).where(
                k.account_id == row.account_id, k.key == row.key).values(
                created_at=row.created_at - by))


def test_after_the_window_the_key_is_new_again_and_purged(
        server: LiveServer, account: Any) -> None:
    first = post(server, account, "k-3")
    age_keys(server, timedelta(hours=23))
    assert post(server, account, "k-3").content == first.content  # still inside 24 h
    age_keys(server, timedelta(hours=2))
    later = post(server, account, "k-3")
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert later.json()["omnimessage_id"] != first.json()["omnimessage_id"]
    assert stored(server) == 2 and keys(server) == 1  # the expired row made way
    # Retention purges what is past the window, and nothing younger.
    post(server, account, "k-4")
    age_keys(server, timedelta(hours=12))
    post(server, account, "k-5")
    age_keys(server, timedelta(hours=13))  # k-3 and k-4 are 25 h old, k-5 13 h
    retention = Retention(server.runtime.db, server.runtime.settings.retention,
                          server.runtime.idempotency.window)
    purged = server.call(retention.purge(utcnow()))
    assert purged.idempotency_keys == 2
    assert keys(server) == 1
    assert post(server, account, "k-5").headers["idempotent-replayed"] == "true"


def test_concurrent_identical_requests_send_once(server: LiveServer, account: Any) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(server, account, "burst"), range(8)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert stored(server) == 1


# --- a retry while the first request is still being stored -----------------------------------

@contextlib.contextmanager
def writes_held(database_url: str) -> Iterator[Callable[[], int]]:
    """Hold back every commit of the key table (SQLite: its write lock; PostgreSQL: a lock on
    the table that lets reads through) until the block ends. Yields how many PostgreSQL
    sessions wait behind it (0 on SQLite, where nobody can tell)."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: 0
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with psycopg.connect(database_url, autocommit=False) as conn:
        conn.execute("LOCK TABLE idempotency_keys IN SHARE MODE")
        pid = conn.info.backend_pid

        def blocked() -> int:
            with psycopg.connect(database_url, autocommit=True) as probe:
                row = probe.execute("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)).fetchone()
                return int(row[0]) if row else 0

        try:
            yield blocked
        finally:
            conn.rollback()


@pytest.fixture
def patient_server(database_url: str) -> Iterator[LiveServer]:
    # The held lock must outlast the test's own steps, so the database wait is long.
    live = start_live_server(make_settings(database_url, database_timeout=60.0))
    yield live
    live.stop()


def test_a_retry_while_the_first_is_being_stored_waits_and_answers_the_same(
        patient_server: LiveServer, database_url: str) -> None:
    server = patient_server
    account = server.call(create_account(server.runtime))
    guard = server.runtime.idempotency
    with ThreadPoolExecutor(2) as pool, writes_held(database_url) as blocked:
        first: Future[httpx.Response] = pool.submit(post, server, account, "slow")
        wait_until(lambda: guard.running(account.id, "slow"))
        if database_url.startswith("postgres"):
            wait_until(lambda: blocked() >= 1)  # the first's transaction waits on the lock
        retry = pool.submit(post, server, account, "slow")
        wait_until(lambda: guard.waiting(account.id, "slow") == 1)
        assert stored(server) == 0  # nothing is committed yet, and the retry is waiting
    answers = [first.result(60), retry.result(60)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[1].content == answers[0].content
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert stored(server) == 1


@pytest.mark.postgres
def test_a_retry_to_another_process_while_the_first_is_uncommitted_sends_once(
        postgres_url: str) -> None:
    settings = make_settings(postgres_url, database_timeout=60.0)
    one = start_live_server(settings)
    two = start_live_server(settings)
    try:
        account = one.call(create_account(one.runtime))
        with ThreadPoolExecutor(2) as pool, writes_held(postgres_url) as blocked:
            first = pool.submit(post, one, account, "twice")
            wait_until(lambda: blocked() >= 1)
            # The other process finds no committed key, so it goes on to store its own
            # message and key, and waits behind the same lock.
            retry = pool.submit(post, two, account, "twice")
            wait_until(lambda: blocked() >= 2)
        answers = [first.result(60), retry.result(60)]
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[0].content == answers[1].content
        assert sorted(a.headers.get("idempotent-replayed", "") for a in answers) == ["", "true"]
        assert stored(one) == 1 and keys(one) == 1
        # Either process replays it from now on.
        assert post(two, account, "twice").content == answers[0].content
        assert post(one, account, "twice").content == answers[0].content
        assert stored(two) == 1
        assert uuid.UUID(answers[0].json()["omnimessage_id"])
    finally:
        two.stop()
        one.stop()


def test_the_window_is_a_setting_with_named_mistakes() -> None:
    settings = load_settings(None, environ={"OMNIRELAY_IDEMPOTENCY__WINDOW_HOURS": "2"})
    assert settings.idempotency.window_hours == 2.0
    runtime = Runtime(settings)
    try:
        assert runtime.idempotency.window == timedelta(hours=2)
    finally:
        runtime.close()
    for wrong in (0, -1, 10_000):
        with pytest.raises(ConfigError, match=r"\[idempotency\] window_hours: must be a "
                                              r"positive number of hours"):
            load_settings(None, environ={}, overrides={"idempotency": {"window_hours": wrong}})
    with pytest.raises(ConfigError, match="did you mean window_hours"):
        load_settings(None, environ={}, overrides={"idempotency": {"window_hour": 1}})


def test_a_request_whose_store_failed_leaves_the_key_free(tmp_path: Path) -> None:
    """A 503 (here: SQLite locked past database_timeout) committed neither the message nor the
    key, so the retry sends, once."""
    url = f"sqlite:///{tmp_path}/omnirelay.db"
    server = start_live_server(make_settings(url, database_timeout=0.5))
    try:
        account = server.call(create_account(server.runtime))
        with writes_held(url):
            failed = post(server, account, "after-503")
        assert failed.status_code == 503
        assert (stored(server), keys(server)) == (0, 0)
        retried = post(server, account, "after-503")
        assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
        assert post(server, account, "after-503").content == retried.content
        assert stored(server) == 1
    finally:
        server.stop()
