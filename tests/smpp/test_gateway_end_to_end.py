"""API -> engine -> SMPP -> SMSC simulator -> receipt -> status -> signed delivery report, and inbound
SMS to the account's webhook; the simulator is what `omnirelay smsc` runs, on SQLite and PostgreSQL.

The simulator runs in a thread of this process (each test a fresh one, over TCP as ever): an
interpreter per test cost 2-4 s here. The `omnirelay smsc` command itself runs as a process in
test_gateway_link.py, test_independent_peers.py and api/test_blacklist.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from omnirelay.smsc import main as run_simulator
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    free_port,
    make_settings,
    start_live_server,
    wait_until,
)

TO = "+37255512345"


@pytest.fixture
def smsc() -> Iterator[tuple[int, str]]:
    """The simulator and its control API, as `omnirelay smsc --user omni:secret-pw
    --receipt-delay 0.05` runs them, in its own thread and event loop."""
    port, control = free_port(), free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    running: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        running.append(loop.create_task(run_simulator(
            "127.0.0.1", port, control, users={"omni": "secret-pw"}, receipt_delay=0.05,
            ready=lambda _simulator: ready.set())))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(running[0])
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: ready.is_set() or not thread.is_alive(), timeout=20)
    assert ready.is_set(), "the simulator did not start"
    try:
        yield port, f"http://127.0.0.1:{control}"
    finally:
        loop.call_soon_threadsafe(running[0].cancel)
        thread.join(15)
        assert not thread.is_alive(), "the simulator did not stop"


@pytest.fixture
def gateway(database_url: str, smsc: tuple[int, str]) -> Iterator[LiveServer]:
    port, _ = smsc
    live = start_live_server(make_settings(
        database_url, channels={"sms": "smpp"},
        providers={"smpp": {"connectors": [{"name": "sim", "host": "127.0.0.1", "port": port,
                                            "system_id": "omni", "password": "secret-pw",
                                            "window": 32, "reconnect_min": 0.2,
                                            # what the dropped link held comes back in 1 s,
                                            # not the default 10
                                            "retry_after": 1.0}]}}))
    yield live
    live.stop()


def send(live: LiveServer, account: Any, text: str, to: str = TO) -> str:
    response = httpx.post(live.base_url + "/v1/omnimessage",
                          auth=(account.api_username, account.api_password),
                          json={"to": to, "messages": [{"channel": "sms", "text": text}]})
    assert response.status_code == 201, response.text
    return response.json()["omnimessage_id"]  # type: ignore[no-any-return]


def status(live: LiveServer, account: Any, omnimessage_id: str) -> dict[str, Any]:
    report = httpx.get(f"{live.base_url}/v1/omnimessage/{omnimessage_id}/status",
                       auth=(account.api_username, account.api_password)).json()
    return report["statuses"][0]  # type: ignore[no-any-return]


def signed_by(received: Any, secret: str) -> bool:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["X-Messente-Signature"], expected)


def test_sms_through_smpp_to_receipt_status_and_report(gateway: LiveServer,
                                                       receiver: WebhookReceiver) -> None:
    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr"))
    cases = {
        "short GSM": (TO, "Your code is 1234", "DELIVRD", 0, 1),
        "long GSM": (TO, "All work and no play. " * 18, "DELIVRD", 0, 3),
        "long UCS-2": (TO, "Ваш код подтверждения: 1234. " * 5, "DELIVRD", 0, 3),
        "undeliverable": ("+37255512997", "hi", "UNDELIV", 1, 1),
        "rejected": ("+37255512999", "hi", "REJECTD", 3, 1),
    }
    ids = {name: send(gateway, account, text, to) for name, (to, text, *_rest) in cases.items()}
    for name, (_to, _text, expected, err, parts) in cases.items():
        final = wait_until(lambda i=ids[name]: status(gateway, account, i)["status"] is not None
                           and status(gateway, account, i))
        assert (final["status"], final["err"]) == (expected, err), name
        assert final["price_info"]["parts_count"] == parts, name
    reports = receiver.wait_for(len(cases))
    assert all(signed_by(r, account.api_password) for r in reports)
    by_message = {r.json()["omnimessage_id"]: r.json() for r in reports}
    assert {by_message[ids[name]]["status"] for name in ("short GSM", "long GSM")} == {"DELIVRD"}
    assert by_message[ids["long UCS-2"]]["price_info"]["parts_count"] == 3


def test_a_dropped_link_loses_nothing(gateway: LiveServer, smsc: tuple[int, str],
                                      receiver: WebhookReceiver) -> None:
    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr"))
    _, control = smsc
    ids = [send(gateway, account, f"message {i}") for i in range(60)]
    assert httpx.post(control + "/drop").status_code == 200
    ids += [send(gateway, account, f"message {i}") for i in range(60, 120)]
    for omnimessage_id in ids:
        wait_until(lambda i=omnimessage_id: status(gateway, account, i)["status"] == "DELIVRD",
                   timeout=60)
    assert {r.json()["omnimessage_id"] for r in receiver.wait_for(120)} == set(ids)


@pytest.mark.parametrize("split", ["single", "udh8", "udh16", "sar"])
def test_inbound_sms_reaches_the_account_webhook_signed(
        gateway: LiveServer, smsc: tuple[int, str], receiver: WebhookReceiver,
        split: str) -> None:
    account = gateway.call(create_account(gateway.runtime, inbound_url=receiver.url + "/inbound"))
    gateway.call(gateway.runtime.store.set_inbound_numbers(account.id, ["+37255500001"]))
    _, control = smsc
    # wait until the connector is bound, so the simulator has someone to deliver to
    wait_until(lambda: httpx.get(control + "/stats").json()["sessions"] >= 1)
    text = "Hello from a phone" if split == "single" else "A long reply from a phone. " * 12
    answer = httpx.post(control + "/inbound", json={
        "from": "+37256789012", "to": "+37255500001", "text": text,
        "split": "udh8" if split == "single" else split})
    assert answer.status_code == 200, answer.text
    received = receiver.wait_for(1)[0]
    body = received.json()
    assert set(body) == {"msg_id", "sub_msg_id", "channel", "recipient", "time", "text", "sender"}
    assert (body["channel"], body["sender"], body["recipient"], body["text"]) == \
        ("sms", "+37256789012", "+37255500001", text)
    assert signed_by(received, account.inbound_secret)
    time.sleep(0.2)
    assert len(receiver.received) == 1


def test_an_smsc_that_reuses_its_ids_gets_each_message_once(
        gateway: LiveServer, smsc: tuple[int, str], receiver: WebhookReceiver) -> None:
    """SMSCs restart, wrap or reset their id counters. Before, a reused id failed the UNIQUE
    constraint, rolled back the outcomes of the whole batch, and the lease running out sent every
    message of it again."""
    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr"))
    _, control = smsc
    first = [send(gateway, account, f"first {i}") for i in range(40)]
    for omnimessage_id in first:
        wait_until(lambda i=omnimessage_id: status(gateway, account, i)["status"] == "DELIVRD")
    assert httpx.get(control + "/stats").json()["submitted"] == 40
    assert httpx.post(control + "/ids", json={"next": 1}).json() == {"next": 1}
    # The same ids again, now for other messages, half of them undeliverable.
    second = {send(gateway, account, f"second {i}", "+37255512997" if i % 2 else TO):
              "UNDELIV" if i % 2 else "DELIVRD" for i in range(40)}
    for omnimessage_id, expected in second.items():
        wait_until(lambda i=omnimessage_id, e=expected: status(gateway, account, i)["status"] == e,
                   timeout=30)
    assert httpx.get(control + "/stats").json()["submitted"] == 80, "a message was sent twice"
    assert {status(gateway, account, i)["status"] for i in first} == {"DELIVRD"}
    reports = receiver.wait_for(80)
    assert {r.json()["omnimessage_id"] for r in reports} == set(first) | set(second)
    assert len(reports) == 80, "a message was reported twice"
