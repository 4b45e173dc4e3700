"""Database outages under load delay work, never stop it: requests that cannot be stored answer
503 in the surface's format within a bounded time, readiness says so, and once the database is
back every message that was answered 201 is sent and reported, without restarting anything.

The faults are real: an exclusive SQLite lock held by another connection past the busy timeout,
and every omnirelay backend terminated on PostgreSQL, several times over ten seconds."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from tests.conftest import POSTGRES_URL
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

REQUEST_BOUND = 15.0  # no request may take longer than this, outage or not
FINAL = {"DELIVRD", "UNDELIV", "FAILED", "REJECTD", "EXPIRED", "DELETED", "SEEN", "NACK"}


@dataclass
class Load:
    """Threads sending single SMS omnimessages until stopped (at most `limit` each)."""

    live: LiveServer
    auth: tuple[str, str]
    limit: int = 5000  # requests per client; the load also ends after `seconds`
    seconds: float = 90.0
    accepted: list[str] = field(default_factory=list)
    refused: list[httpx.Response] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    slowest: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int = 3) -> Load:
        for n in range(clients):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _run(self, n: int) -> None:
        ends = time.monotonic() + self.seconds
        with httpx.Client(base_url=self.live.base_url, auth=self.auth,
                          timeout=REQUEST_BOUND) as client:
            for i in range(self.limit):
                if self.stop.is_set() or time.monotonic() > ends:
                    return
                started = time.monotonic()
                try:
                    response = client.post("/v1/omnimessage", json={
                        "to": f"+3725551{n}{i % 1000:03d}",
                        "messages": [{"channel": "sms", "text": f"load {n}/{i}"}]})
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.other.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.monotonic() - started
                with self.lock:
                    self.slowest = max(self.slowest, elapsed)
                    if response.status_code == 201:
                        self.accepted.append(response.json()["omnimessage_id"])
                    elif response.status_code == 503:
                        self.refused.append(response)
                    else:
                        self.other.append(f"{response.status_code} {response.text}")
                time.sleep(0.01)  # pacing, so a run stays well inside its bounds

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(REQUEST_BOUND + 5)


def ready_status(live: LiveServer) -> int:
    return httpx.get(live.base_url + "/health/ready", timeout=10).status_code


def check_everything_acknowledged_was_delivered(live: LiveServer, load: Load,
                                                receiver: WebhookReceiver) -> None:
    assert load.other == [], load.other[:5]
    assert load.slowest < REQUEST_BOUND
    for response in load.refused:
        error = response.json()["errors"][0]
        assert error["code"] == "104" and "database is unavailable" in error["detail"]
        assert response.headers["Retry-After"]
    accepted = set(load.accepted)

    def all_reported() -> bool:
        with receiver.lock:
            reported = {r.json()["omnimessage_id"] for r in receiver.received
                        if r.json().get("status") in FINAL}
        return accepted <= reported

    wait_until(all_reported, timeout=90, interval=0.2)
    # and the status API agrees, for a sample
    with httpx.Client(base_url=live.base_url, auth=load.auth) as client:
        for omnimessage_id in list(accepted)[:: max(1, len(accepted) // 25)]:
            statuses = client.get(f"/v1/omnimessage/{omnimessage_id}/status").json()["statuses"]
            assert statuses and statuses[0]["status"] in FINAL, statuses


def recover_and_check(live: LiveServer, load: Load, receiver: WebhookReceiver) -> float:
    """After the fault: readiness comes back, new requests are accepted again, and everything
    acknowledged is delivered and reported. Returns seconds until ready."""
    ended = time.monotonic()
    wait_until(lambda: ready_status(live) == 200, timeout=30)
    recovered = time.monotonic() - ended
    accepted = load.count()
    wait_until(lambda: load.count() >= accepted + 30, timeout=30)
    load.finish()
    check_everything_acknowledged_was_delivered(live, load, receiver)
    return recovered


def start_gateway(database_url: str, receiver: WebhookReceiver, **overrides: Any
                  ) -> tuple[LiveServer, tuple[str, str]]:
    live = start_live_server(make_settings(
        database_url, database_timeout=0.5,
        webhooks={"backoff_base": 0.2, "backoff_factor": 1.5, "jitter": 0.1, "max_tries": 50},
        **overrides))
    account = live.call(create_account(live.runtime, dlr_url=receiver.url + "/dlr"))
    return live, (account.api_username, account.api_password)


def during(seconds: float, step: Callable[[], None], every: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        step()
        time.sleep(every)


def test_sqlite_locked_by_another_process_past_the_busy_timeout(
        tmp_path: Any, receiver: WebhookReceiver) -> None:
    path = tmp_path / "omnirelay.db"
    live, auth = start_gateway(f"sqlite:///{path}", receiver)
    load = Load(live, auth)
    try:
        load.start()
        wait_until(lambda: load.count() >= 30, timeout=30)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        readiness_during: list[int] = []
        try:
            refused_before = len(load.refused)
            during(3.0, lambda: readiness_during.append(ready_status(live)), every=0.3)
            assert len(load.refused) > refused_before, "the lock did not stop any write"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert 503 in readiness_during, readiness_during
        recovered = recover_and_check(live, load, receiver)
        print(f"\nSQLite lock: {len(load.accepted)} accepted, {len(load.refused)} answered 503, "
              f"slowest request {load.slowest:.2f} s, ready again {recovered:.2f} s after")
    finally:
        load.finish()
        live.stop()


def test_postgres_backends_terminated_again_and_again(
        postgres_url: str, receiver: WebhookReceiver) -> None:
    name = "omnirelay_outage_" + uuid.uuid4().hex[:8]
    live, auth = start_gateway(f"{postgres_url}&application_name={name}", receiver)
    load = Load(live, auth)
    killed: list[int] = []

    def terminate() -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = %s", (name,)).fetchall()
        killed.append(len(rows))

    try:
        load.start()
        wait_until(lambda: load.count() >= 30, timeout=30)
        during(10.0, terminate, every=2.0)
        assert sum(killed) >= len(killed), f"too few backends terminated: {killed}"
        recovered = recover_and_check(live, load, receiver)
        restarts = {task: state["restarts"] for task, state in live.runtime.supervisor.report().items()}
        print(f"\nPostgreSQL terminations {killed}: {len(load.accepted)} accepted, "
              f"{len(load.refused)} answered 503, slowest request {load.slowest:.2f} s, "
              f"ready {recovered:.2f} s after the last, restarts {restarts}")
    finally:
        load.finish()
        live.stop()
