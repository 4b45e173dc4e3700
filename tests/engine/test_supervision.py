"""Supervision: a task that fails is logged, counted and restarted; delivery survives a failure in
the dispatcher's idle wait; readiness tells the truth; webhook failures and lease recovery are
logged with their causes."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from omnirelay.core.timefmt import utcnow
from omnirelay.metrics import Metrics
from omnirelay.supervisor import Supervisor
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

TO = "+37255512345"


def restarts(metrics: Metrics, task: str) -> float:
    value = metrics.registry.get_sample_value("omnirelay_task_restarts_total", {"task": task})
    return value or 0.0


async def test_a_task_that_raises_is_logged_counted_and_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    supervisor = Supervisor(metrics, backoff_min=0.01, backoff_max=0.05)
    runs: list[int] = []
    healthy = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) <= 3:
            raise RuntimeError(f"boom {len(runs)}")
        healthy.set()
        await supervisor.stopping_event.wait()

    with caplog.at_level(logging.ERROR, logger="omnirelay.supervisor"):
        supervisor.spawn("flaky", flaky)
        await asyncio.wait_for(healthy.wait(), 5)
        assert supervisor.report()["flaky"]["state"] == "running"
        await supervisor.stop(grace=1)
    assert len(runs) == 4
    assert restarts(metrics, "flaky") == 3
    failures = [r for r in caplog.records if "task flaky failed" in r.getMessage()]
    assert len(failures) == 3, "each failure is logged exactly once"
    assert all(r.exc_info is not None for r in failures), "with its traceback"
    assert "boom 3" in supervisor.report()["flaky"]["last_error"]  # type: ignore[operator]
    assert supervisor.report()["flaky"]["state"] == "stopped"


async def test_a_task_that_returns_on_its_own_is_restarted() -> None:
    metrics = Metrics()
    supervisor = Supervisor(metrics, backoff_min=0.01, backoff_max=0.01)
    runs: list[int] = []

    async def quits() -> None:
        runs.append(1)
        if len(runs) >= 3:
            await supervisor.stopping_event.wait()

    supervisor.spawn("quits", quits)
    for _ in range(200):
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.01)
    assert len(runs) == 3
    assert restarts(metrics, "quits") == 2
    assert "ended without being asked" in str(supervisor.report()["quits"]["last_error"])
    await supervisor.stop(grace=1)


async def test_the_back_off_grows_while_a_task_keeps_failing() -> None:
    supervisor = Supervisor(Metrics(), backoff_min=0.02, backoff_max=0.16)
    stamps: list[float] = []
    loop = asyncio.get_running_loop()

    async def always_fails() -> None:
        stamps.append(loop.time())
        raise OSError("database gone")

    supervisor.spawn("always", always_fails)
    while len(stamps) < 6:
        await asyncio.sleep(0.01)
    await supervisor.stop(grace=1)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] < gaps[3], gaps
    assert supervisor.failing() == []  # stopped, not restarting


def send(live: LiveServer, account: Any, to: str = TO) -> str:
    response = httpx.post(live.base_url + "/v1/omnimessage",
                          auth=(account.api_username, account.api_password),
                          json={"to": to, "messages": [{"channel": "sms", "text": "hi"}]})
    assert response.status_code == 201, response.text
    return response.json()["omnimessage_id"]  # type: ignore[no-any-return]


def final_status(live: LiveServer, account: Any, omnimessage_id: str) -> str | None:
    body = httpx.get(f"{live.base_url}/v1/omnimessage/{omnimessage_id}/status",
                     auth=(account.api_username, account.api_password)).json()
    statuses = body["statuses"]
    return statuses[0]["status"] if statuses else None


def test_a_raise_in_the_dispatchers_idle_wait_does_not_stop_delivery(
        gateway: LiveServer, receiver: WebhookReceiver) -> None:
    """Before supervision, one error reading the next due time ended the dispatcher for good
    while the API went on answering 201."""
    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr"))
    store = gateway.runtime.store
    real = store.next_due_time
    failures = {"left": 3}

    async def failing_next_due_time() -> Any:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("SELECT min(due_at)", {}, Exception("server closed the connection"))
        return await real()

    store.next_due_time = failing_next_due_time  # type: ignore[method-assign]
    wait_until(lambda: failures["left"] == 0, timeout=20)
    ids = [send(gateway, account) for _ in range(3)]
    for omnimessage_id in ids:
        wait_until(lambda i=omnimessage_id: final_status(gateway, account, i) == "DELIVRD")
    assert restarts(gateway.runtime.metrics, "dispatcher") >= 1
    ready = httpx.get(gateway.base_url + "/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["tasks"]["dispatcher"]["restarts"] >= 1


def test_readiness_reports_the_database_and_each_loop(gateway: LiveServer) -> None:
    assert httpx.get(gateway.base_url + "/health").json() == {"status": "ok"}
    response = httpx.get(gateway.base_url + "/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True and body["status"] == "ready"
    assert body["database"]["ok"] is True
    for loop in ("dispatcher", "webhooks", "expiry", "housekeeping"):
        assert body["tasks"][loop]["state"] == "running", body["tasks"]
    assert body["failing"] == []


def test_readiness_is_503_while_a_loop_keeps_failing(gateway: LiveServer) -> None:
    store = gateway.runtime.store

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OperationalError("UPDATE webhooks", {}, Exception("connection refused"))

    real = store.claim_webhooks
    store.claim_webhooks = broken  # type: ignore[method-assign]
    try:
        response = wait_until(
            lambda: (r := httpx.get(gateway.base_url + "/health/ready")).status_code == 503 and r)
        body = response.json()
        assert body["ready"] is False and body["failing"] == ["webhooks"]
        assert "connection refused" in body["tasks"]["webhooks"]["last_error"]
    finally:
        store.claim_webhooks = real  # type: ignore[method-assign]
    wait_until(lambda: httpx.get(gateway.base_url + "/health/ready").status_code == 200)


def test_failed_webhook_tries_are_logged_with_host_error_and_next_try(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    receiver = WebhookReceiver(fail_first=10**6).start()  # always 500
    live = start_live_server(make_settings(
        database_url, webhooks={"backoff_base": 0.1, "backoff_factor": 1.0, "jitter": 0.0,
                                "max_tries": 3}))
    try:
        with caplog.at_level(logging.WARNING, logger="omnirelay.engine.webhooks"):
            url = receiver.url.replace("http://", "http://user:pw@") + "/dlr?token=secret"
            account = live.call(create_account(live.runtime, dlr_url=url))
            send(live, account)

            def gave_up() -> bool:
                return any("giving up" in r.getMessage() for r in caplog.records)

            wait_until(gave_up)
    finally:
        live.stop()
        receiver.stop()
    host = receiver.url.removeprefix("http://")
    tries = [r for r in caplog.records if r.name == "omnirelay.engine.webhooks"]
    retries = [r for r in tries if r.levelno == logging.WARNING and "next try in" in r.getMessage()]
    final = [r for r in tries if r.levelno == logging.ERROR and "giving up" in r.getMessage()]
    assert len(retries) == 2 and len(final) == 1, [r.getMessage() for r in tries]
    for record in retries + final:
        message = record.getMessage()
        assert host in message and "HTTP 500" in message
        assert "pw" not in message and "secret" not in message and "/dlr" not in message
    assert "after 3 tries" in final[0].getMessage()


def test_lease_recovery_says_whose_leases_and_why(
        gateway: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    from omnirelay.engine.maintenance import Maintenance

    runtime = gateway.runtime
    account = gateway.call(create_account(runtime))
    maintenance = Maintenance(runtime.store, runtime.sink, runtime.settings.engine, "observer",
                              runtime.wakeup)

    async def scenario() -> None:
        from omnirelay.core.accept import NewOmnimessage
        from omnirelay.core.omnimessage import PlannedAttempt

        await runtime.store.insert_omnimessages([NewOmnimessage(
            id=f"00000000-0000-0000-0000-00000000000{i}", account_id=account.id,
            surface="messente", to=TO, priority=1, time_to_send=utcnow() + timedelta(days=1),
            dlr_url=None, text_store="plaintext",
            attempts=(PlannedAttempt(f"10000000-0000-0000-0000-00000000000{i}", 0, "sms", "Acme",
                                 {"text": "hi"}, 3600),)) for i in range(2)], utcnow())
        later = utcnow() + timedelta(days=1, seconds=1)
        # A lease that ended a day ago, held by a worker that still beats.
        await runtime.store.claim_due_attempts("slow-worker", 1, -2 * 86400, later)
        await runtime.store.claim_due_attempts("gone-worker", 1, 3600, later)
        await runtime.store.heartbeat("gone-worker", utcnow() - timedelta(hours=1),
                                      utcnow() - timedelta(days=1))
        await maintenance.housekeeping_pass()

    with caplog.at_level(logging.WARNING, logger="omnirelay.engine.maintenance"):
        gateway.call(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("worker gone-worker missed" in m for m in messages), messages
    assert any("leased by worker gone-worker (heartbeat lost)" in m for m in messages), messages
    assert any("leased by worker slow-worker (lease expired)" in m for m in messages), messages
