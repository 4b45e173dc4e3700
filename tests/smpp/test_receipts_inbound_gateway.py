"""Receipts and inbound SMS as SMSCs other than ours send them, through the whole gateway (API ->
engine -> SMPP over TCP -> simulator -> receipt/inbound -> store -> webhook), on SQLite and
PostgreSQL (issue 13: items 1-4, 8 and 9)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from omnirelay.core.timefmt import utcnow
from omnirelay.smsc import SmscSimulator
from omnirelay.store.tables import inbound_messages, unmatched_reports
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

T = TypeVar("T")
TO = "+37255512345"
UNDELIVERABLE = "+37255512997"  # the simulator's default rules: ...997 gets stat:UNDELIV


class Simulator:
    """An SMSC simulator in a thread of its own, with its own event loop."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.smsc = SmscSimulator(port=0, users={"omni": "secret-pw"}, receipt_delay=0.05,
                                  **options)
        self.run(self.smsc.start)

    def run(self, function: Callable[[], Any]) -> Any:
        async def call() -> Any:
            result = function()
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def stop(self) -> None:
        self.run(self.smsc.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def gateway_with(database_url: str, simulator: Simulator, engine: dict[str, Any] | None = None,
                 **connector: Any) -> LiveServer:
    settings = make_settings(
        database_url, channels={"sms": "smpp"}, engine=engine or {},
        providers={"smpp": {"connectors": [{
            "name": "sim", "host": "127.0.0.1", "port": simulator.smsc.port, "system_id": "omni",
            "password": "secret-pw", "window": 16, "reconnect_min": 0.2, **connector}]}})
    return start_live_server(settings)


@pytest.fixture
def running() -> Iterator[list[Any]]:
    """Everything a test started, stopped in reverse order however the test ends."""
    started: list[Any] = []
    yield started
    for thing in reversed(started):
        thing.stop()


def start(running: list[Any], thing: T) -> T:
    running.append(thing)
    return thing


def send(live: LiveServer, account: Any, text: str, to: str = TO) -> str:
    response = httpx.post(live.base_url + "/v1/omnimessage",
                          auth=(account.api_username, account.api_password),
                          json={"to": to, "messages": [{"channel": "sms", "text": text}]})
    assert response.status_code == 201, response.text
    return response.json()["omnimessage_id"]  # type: ignore[no-any-return]


def status_of(live: LiveServer, account: Any, omnimessage_id: str) -> str | None:
    report = httpx.get(f"{live.base_url}/v1/omnimessage/{omnimessage_id}/status",
                       auth=(account.api_username, account.api_password)).json()
    return report["statuses"][0]["status"]  # type: ignore[no-any-return]


def metric(live: LiveServer, name: str, **labels: str) -> float | None:
    return live.runtime.metrics.registry.get_sample_value(name, labels)


def scraped(live: LiveServer) -> str:
    response = httpx.get(live.base_url + "/metrics")
    assert response.status_code == 200
    return response.text


def rows(live: LiveServer, *columns: Any) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        return await live.runtime.db.read(
            lambda conn: [tuple(r) for r in conn.execute(select(*columns)).all()])

    return live.call(read())


# --- item 1: a parked receipt belongs to no later message; parked ones expire, counted ----------

def test_receipts_nobody_sent_are_counted_expire_and_never_reach_a_later_message(
        database_url: str, running: list[Any], receiver: WebhookReceiver,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="omnirelay.store.dispatch")
    simulator = start(running, Simulator(id_start=500))
    gateway = start(running, gateway_with(
        database_url, simulator, engine={"receipt_match_window": 1.0, "heartbeat_seconds": 1.0}))
    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr"))
    wait_until(lambda: simulator.smsc.snapshot()["sessions"] >= 1)
    # Receipts for ids 500-505, which the SMSC hands out next: the opposite of what the six
    # messages below will really get.
    stray = {f"{number:08X}": ("DELIVRD" if number % 2 else "UNDELIV") for number in range(500, 506)}
    for smsc_id, state in stray.items():
        simulator.run(lambda i=smsc_id, s=state: simulator.smsc.inject_receipt(i, s))
    wait_until(lambda: metric(gateway, "omnirelay_receipts_unmatched_total", channel="sms",
                              outcome="parked") == 6)
    assert "matched no message" in caplog.text
    # housekeeping drops them once the match window is over
    wait_until(lambda: metric(gateway, "omnirelay_receipts_unmatched_total", channel="sms",
                              outcome="expired") == 6)
    assert rows(gateway, unmatched_reports.c.ref) == []
    assert 'omnirelay_receipts_unmatched_total{channel="sms",outcome="expired"} 6.0' in \
        scraped(gateway)
    expected = {send(gateway, account, f"message {n}", UNDELIVERABLE if n % 2 == 0 else TO):
                ("UNDELIV" if n % 2 == 0 else "DELIVRD") for n in range(500, 506)}
    assert simulator.smsc.snapshot()["next_id"] <= 506 + 1
    for omnimessage_id, state in expected.items():
        wait_until(lambda i=omnimessage_id, s=state: status_of(gateway, account, i) == s)
    reports = receiver.wait_for(6)
    assert {r.json()["omnimessage_id"]: r.json()["status"] for r in reports} == expected
    assert len(reports) == 6


# --- item 2: receipt_id_base applies to the receipted_message_id TLV too -----------------------

def test_decimal_tlv_and_text_ids_match_hex_submit_ids(
        database_url: str, running: list[Any]) -> None:
    # ids from 100 on: written differently in both bases, so nothing matches by chance
    simulator = start(running, Simulator(id_format="hex-dec-tlv", id_start=100))
    gateway = start(running, gateway_with(database_url, simulator, receipt_id_base="dec"))
    account = gateway.call(create_account(gateway.runtime))
    ids = [send(gateway, account, f"decimal {n}") for n in range(4)]
    for omnimessage_id in ids:
        wait_until(lambda i=omnimessage_id: status_of(gateway, account, i) == "DELIVRD")
    assert simulator.smsc.snapshot()["receipts_sent"] == 4
    assert rows(gateway, unmatched_reports.c.ref) == []


# --- item 3: receipts in UCS-2; a receipt not understood is logged raw --------------------------

def test_ucs2_receipts_are_read_and_unreadable_ones_logged_raw(
        database_url: str, running: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="omnirelay.channels.smpp.channel")
    simulator = start(running, Simulator(receipt_coding="ucs2"))
    gateway = start(running, gateway_with(database_url, simulator))
    account = gateway.call(create_account(gateway.runtime))
    cases = {send(gateway, account, "Ваш код 1234"): "DELIVRD",
             send(gateway, account, "Hello"): "DELIVRD",
             send(gateway, account, "Ошибка", UNDELIVERABLE): "UNDELIV",
             send(gateway, account, "你好 世界"): "DELIVRD"}
    for omnimessage_id, expected in cases.items():
        wait_until(lambda i=omnimessage_id, e=expected: status_of(gateway, account, i) == e)
    garbage = "kein Beleg ☹".encode("utf-16-be")
    before = simulator.smsc.snapshot()["receipts_sent"]
    simulator.run(lambda: simulator.smsc.inject_receipt("", short_message=garbage, data_coding=8))
    # acknowledged (the simulator counts only acknowledged receipts) and logged with its raw fields
    wait_until(lambda: simulator.smsc.snapshot()["receipts_sent"] == before + 1)
    wait_until(lambda: garbage.hex() in caplog.text)
    assert "esm_class=0x04 data_coding=0x08" in caplog.text


# --- item 4: inbound addressed with TON 0; inbound nobody owns ---------------------------------

def test_inbound_with_ton_0_is_normalised_and_reaches_its_owner(
        database_url: str, running: list[Any], receiver: WebhookReceiver,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="omnirelay.store.inbound")
    simulator = start(running, Simulator())
    gateway = start(running, gateway_with(database_url, simulator))
    account = gateway.call(create_account(gateway.runtime, inbound_url=receiver.url + "/inbound"))
    gateway.call(gateway.runtime.store.set_inbound_numbers(account.id, ["+37255500001", "1234"]))
    wait_until(lambda: simulator.smsc.snapshot()["sessions"] >= 1)
    for sender, recipient, text in (("37256789012", "37255500001", "international, TON 0"),
                                    ("37256789013", "1234", "short code, TON 0"),
                                    ("37256789014", "37255500002", "nobody's, TON 0")):
        simulator.run(lambda s=sender, r=recipient, t=text: simulator.smsc.inject_inbound(
            s, r, t, sender_ton=0, recipient_ton=0))
    received = {r.json()["text"]: r.json() for r in receiver.wait_for(2)}
    assert {text: (body["sender"], body["recipient"]) for text, body in received.items()} == {
        "international, TON 0": ("+37256789012", "+37255500001"),
        "short code, TON 0": ("+37256789013", "1234")}
    wait_until(lambda: metric(gateway, "omnirelay_inbound_unowned_total", channel="sms") == 1)
    assert "no account owns that number" in caplog.text and "+37255500002" in caplog.text
    stored = rows(gateway, inbound_messages.c.recipient, inbound_messages.c.account_id)
    assert sorted(stored, key=lambda r: str(r[0])) == sorted(
        [("+37255500001", account.id), ("1234", account.id), ("+37255500002", None)],
        key=lambda r: str(r[0]))
    assert len(receiver.received) == 2


def test_inbound_ucs2_text_with_a_nul_is_kept(database_url: str, running: list[Any],
                                             receiver: WebhookReceiver) -> None:
    """PostgreSQL's text cannot hold NUL; the message is kept (NUL as U+FFFD), not dropped."""
    simulator = start(running, Simulator())
    gateway = start(running, gateway_with(database_url, simulator))
    account = gateway.call(create_account(gateway.runtime, inbound_url=receiver.url + "/inbound"))
    gateway.call(gateway.runtime.store.set_inbound_numbers(account.id, ["+37255500001"]))
    wait_until(lambda: simulator.smsc.snapshot()["sessions"] >= 1)
    simulator.run(lambda: simulator.smsc.inject_inbound("+37256789012", "+37255500001",
                                                        "Жёлтый\x00ЖЖ"))
    (delivered,) = receiver.wait_for(1)
    assert delivered.json()["text"] == "Жёлтый\ufffdЖЖ"
    assert rows(gateway, inbound_messages.c.text) == [("Жёлтый\ufffdЖЖ",)]


# --- item 8: one receipt per concatenated message ----------------------------------------------

@pytest.mark.parametrize("rule", ["first", "last"])
def test_one_receipt_per_concatenated_message(database_url: str, running: list[Any],
                                              rule: str) -> None:
    simulator = start(running, Simulator(multipart_receipts=rule))
    gateway = start(running, gateway_with(database_url, simulator, multipart_receipts=rule))
    account = gateway.call(create_account(gateway.runtime))
    cases = {send(gateway, account, "All work and no play. " * 18): "DELIVRD",  # 3 parts
             send(gateway, account, "Ошибка доставки. " * 10, UNDELIVERABLE): "UNDELIV",
             send(gateway, account, "one part"): "DELIVRD"}
    for omnimessage_id, expected in cases.items():
        wait_until(lambda i=omnimessage_id, e=expected: status_of(gateway, account, i) == e)
    snapshot = simulator.smsc.snapshot()
    assert snapshot["submitted"] == 3 + 3 + 1
    assert snapshot["receipts_sent"] == 3, "one receipt per message"


# --- item 9: bind gauge, bind-refused line, receipt time not before the submit -----------------

def test_bind_gauge_refused_bind_log_and_receipt_times(
        database_url: str, running: list[Any], receiver: WebhookReceiver,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="omnirelay.channels.smpp.connector")
    simulator = start(running, Simulator())
    settings = make_settings(
        database_url, channels={"sms": "smpp"},
        providers={"smpp": {"connectors": [
            {"name": "sim", "host": "127.0.0.1", "port": simulator.smsc.port, "system_id": "omni",
             "password": "secret-pw", "reconnect_min": 0.2},
            {"name": "badpw", "host": "127.0.0.1", "port": simulator.smsc.port,
             "system_id": "omni", "password": "wrong", "reconnect_min": 0.2,
             "reconnect_max": 0.5, "bind": "transmitter+receiver"}],
            "routes": [{"prefix": "", "connectors": ["sim"]}]}})
    gateway = start(running, start_live_server(settings))
    wait_until(lambda: 'omnirelay_smpp_bind_up{connector="sim",role="trx"} 1.0' in scraped(gateway))
    text = scraped(gateway)
    assert 'omnirelay_smpp_bind_up{connector="badpw",role="tx"} 0.0' in text
    assert 'omnirelay_smpp_bind_up{connector="badpw",role="rx"} 0.0' in text
    wait_until(lambda: "RINVPASWD" in caplog.text)
    refused = next(line for line in caplog.text.splitlines() if "RINVPASWD" in line)
    assert refused.count("badpw") == 1, refused

    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr"))
    before = utcnow()  # naive UTC, as the report's timestamp
    ids = [send(gateway, account, f"timed {n}") for n in range(3)]
    reports = receiver.wait_for(3)
    assert {r.json()["omnimessage_id"] for r in reports} == set(ids)
    # the receipts' done date has minute resolution: it must not put delivery before the submit
    stamps = [datetime.fromisoformat(r.json()["timestamp"]) for r in reports]
    assert all(stamp >= before for stamp in stamps), (before, stamps)

    simulator.stop()
    running.remove(simulator)
    wait_until(lambda: 'omnirelay_smpp_bind_up{connector="sim",role="trx"} 0.0' in scraped(gateway))
