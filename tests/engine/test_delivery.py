"""The delivery engine through the API: fallback chains, expiry, scheduling, priorities, signed
delivery reports to a real receiver, content retention. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import select

from omnirelay.channels.base import OutboundMessage, SendResult
from omnirelay.channels.sandbox import SandboxChannel
from omnirelay.config import Settings
from omnirelay.runtime import Runtime
from omnirelay.store.tables import attempts
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    wait_until,
)
from tests.templates import premigrate

TO = "+37255512345"


class RecordingSandbox(SandboxChannel):
    """The sandbox, remembering what it was asked to send and in which order."""

    def __init__(self, delay_ms: int) -> None:
        super().__init__(delay_ms)
        self.log: list[OutboundMessage] = []

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        self.log.extend(batch)
        return await super().send(batch)


def send(live: LiveServer, account: Any, payload: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(live.base_url + "/v1/omnimessage", json=payload,
                          auth=(account.api_username, account.api_password))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def statuses(live: LiveServer, account: Any, omnimessage_id: str) -> list[tuple[str, Any]]:
    response = httpx.get(f"{live.base_url}/v1/omnimessage/{omnimessage_id}/status",
                         auth=(account.api_username, account.api_password))
    return [(s["channel"], s["status"]) for s in response.json()["statuses"]]


def attempt_states(live: LiveServer, omnimessage_id: str) -> list[tuple[str, str, Any]]:
    def work(conn: Any) -> list[tuple[str, str, Any]]:
        rows = conn.execute(select(attempts.c.channel, attempts.c.state, attempts.c.status)
                            .where(attempts.c.omnimessage_id == omnimessage_id)
                            .order_by(attempts.c.seq))
        return [tuple(r) for r in rows]

    return live.call(live.runtime.db.read(work))


def verify(received: Any, secret: str) -> None:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["X-Messente-Signature"] == expected


CHAIN = [{"channel": "viber", "text": "v"}, {"channel": "whatsapp", "text": {"body": "w"}},
         {"channel": "sms", "text": "s"}]


def test_first_channel_delivers_and_the_rest_are_never_sent(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime))
    sent = send(gateway, account, {"to": TO, "messages": CHAIN})
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[0][2] == "DELIVRD")
    assert attempt_states(gateway, sent["omnimessage_id"]) == [
        ("viber", "done", "DELIVRD"), ("whatsapp", "skipped", None), ("sms", "skipped", None)]
    assert statuses(gateway, account, sent["omnimessage_id"]) == [("viber", "DELIVRD")]


def test_first_undeliverable_then_second_delivers(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime))
    sent = send(gateway, account, {"to": "+37255519981", "messages": CHAIN})
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[1][2] == "UNDELIV")
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[2][2] == "DELIVRD")
    assert statuses(gateway, account, sent["omnimessage_id"]) == [
        ("viber", "UNDELIV"), ("whatsapp", "UNDELIV"), ("sms", "DELIVRD")]


def test_silent_channel_expires_after_its_ttl_then_the_next_runs(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime))
    started = time.monotonic()
    sent = send(gateway, account, {"to": "+37255519980", "messages": [
        {"channel": "viber", "text": "v", "ttl": 2}, {"channel": "sms", "text": "s"}]})
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[0][2] == "EXPIRED")
    expired_after = time.monotonic() - started
    assert 2.0 <= expired_after < 3.0 + 0.5  # deadline 2 s; expiry fires within a second
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[1][2] == "DELIVRD")
    report = httpx.get(f"{gateway.base_url}/v1/omnimessage/{sent['omnimessage_id']}/status",
                       auth=(account.api_username, account.api_password)).json()
    assert (report["statuses"][0]["status"], report["statuses"][0]["err"]) == ("EXPIRED", 2)


def test_expiry_sleeps_until_the_deadline_instead_of_polling(gateway: LiveServer) -> None:
    """Expiry used to open a write transaction every 250 ms; it now reads the nearest deadline
    (at most every engine.poll_interval) and writes only when one has passed."""
    store = gateway.runtime.store
    real = store.expire_attempts
    passes: list[int] = []

    async def counted(*args: Any, **kwargs: Any) -> int:
        expired = await real(*args, **kwargs)
        passes.append(expired)
        return expired

    store.expire_attempts = counted  # type: ignore[method-assign]
    account = gateway.call(create_account(gateway.runtime))
    sent = send(gateway, account, {"to": "+37255519980", "messages": [
        {"channel": "viber", "text": "v", "ttl": 3}, {"channel": "sms", "text": "s"}]})
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[0][2] == "EXPIRED")
    # 3 s of waiting took one pass that expired it (a second may find a deadline due but locked)
    assert 1 <= len(passes) <= 2 and sum(passes) == 1, passes


def test_every_channel_fails(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime))
    sent = send(gateway, account, {"to": "+37255519993", "messages": CHAIN})
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[2][2] == "FAILED")
    assert [s for _, _, s in attempt_states(gateway, sent["omnimessage_id"])] == \
        ["FAILED", "FAILED", "FAILED"]
    rejected = send(gateway, account, {"to": "+37255519992", "messages": CHAIN[:1]})
    wait_until(lambda: attempt_states(gateway, rejected["omnimessage_id"])[0][2] == "REJECTD")


def test_scheduled_message_goes_out_within_a_second_of_its_time(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime))
    due = time.time() + 2
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(due)) + f".{int(due % 1 * 1e6):06d}Z"
    sent = send(gateway, account, {"to": TO, "time_to_send": moment,
                                   "messages": [{"channel": "sms", "text": "later"}]})
    time.sleep(1.0)
    assert attempt_states(gateway, sent["omnimessage_id"])[0][1] == "due"
    wait_until(lambda: attempt_states(gateway, sent["omnimessage_id"])[0][1] != "due",
               interval=0.01)
    assert time.time() - due < 1.0


def test_delivery_reports_are_signed_ordered_and_survive_a_failing_receiver(
        gateway: LiveServer, receiver: WebhookReceiver) -> None:
    receiver.fail_first = 3
    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/default"))
    chained = send(gateway, account, {"to": "+37255519981", "messages": CHAIN})
    own_url = send(gateway, account, {"to": TO, "dlr_url": receiver.url + "/mine",
                                      "messages": [{"channel": "sms", "text": "s"}]})
    received = receiver.wait_for(4)
    for item in received:
        verify(item, account.api_password)
        assert item.headers["Content-Type"] == "application/json"
    chain_reports = [r.json() for r in received if r.path == "/default"]
    assert [(r["channel"], r["status"]) for r in chain_reports] == [
        ("viber", "UNDELIV"), ("whatsapp", "UNDELIV"), ("sms", "DELIVRD")]
    assert {r["omnimessage_id"] for r in chain_reports} == {chained["omnimessage_id"]}
    mine = [r.json() for r in received if r.path == "/mine"]
    assert len(mine) == 1
    assert set(mine[0]) == {"status", "sender", "err", "message_id", "to", "channel", "error",
                            "omnimessage_id", "timestamp", "price_info"}
    assert mine[0]["message_id"] == own_url["messages"][0]["message_id"]
    assert receiver.attempts >= 4 + 3


def test_content_retention(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime))
    ids = {mode: send(gateway, account, {"to": TO, "text_store": mode, "messages": [
        {"channel": "sms", "text": "secret code 1234"}]})["omnimessage_id"]
        for mode in ("plaintext", "sha256", "nostore")}

    def stored(omnimessage_id: str) -> tuple[Any, Any, str]:
        def work(conn: Any) -> tuple[Any, Any, str]:
            row = conn.execute(select(attempts.c.content, attempts.c.content_sha256,
                                      attempts.c.state)
                               .where(attempts.c.omnimessage_id == omnimessage_id)).one()
            return row[0], row[1], row[2]

        return gateway.call(gateway.runtime.db.read(work))

    for omnimessage_id in ids.values():
        wait_until(lambda i=omnimessage_id: stored(i)[2] == "done")
    assert stored(ids["plaintext"])[0] == {"text": "secret code 1234"}
    content, digest, _ = stored(ids["sha256"])
    assert content is None
    assert digest == hashlib.sha256(b'{"text":"secret code 1234"}').hexdigest()
    assert stored(ids["nostore"])[:2] == (None, None)


async def test_high_priority_goes_out_before_a_low_priority_backlog(database_url: str) -> None:
    recorder = RecordingSandbox(delay_ms=10)

    def factory(_table: Any, _settings: Settings, _name: str) -> Any:
        return recorder

    settings = make_settings(database_url, engine={"batch_size": 20})
    premigrate(database_url)
    runtime = Runtime(settings, factories={"sandbox": factory})
    runtime.migrate()
    try:
        from omnirelay.core.accept import messente_omnimessage
        from omnirelay.core.omnimessage import parse_omnimessage

        account = await create_account(runtime)
        low = [messente_omnimessage(account, parse_omnimessage(
            {"to": TO, "priority": "low", "messages": [{"channel": "sms", "text": "ad"}]}),
            runtime.settings.engine)
            for _ in range(100)]
        high = [messente_omnimessage(account, parse_omnimessage(
            {"to": TO, "priority": "high", "messages": [{"channel": "sms", "text": "otp"}]}),
            runtime.settings.engine)
            for _ in range(10)]
        await runtime.accept(low)
        await runtime.accept(high)  # accepted last, with the low backlog already waiting
        await runtime.start()
        deadline = time.monotonic() + 20
        while len(recorder.log) < 110 and time.monotonic() < deadline:
            import asyncio
            await asyncio.sleep(0.05)
        order = [m.content["text"] for m in recorder.log]
        assert len(order) == 110
        assert order[:10] == ["otp"] * 10
    finally:
        await runtime.stop()
        runtime.close()


def test_metrics_count_what_happened(gateway: LiveServer, receiver: WebhookReceiver) -> None:
    account = gateway.call(create_account(gateway.runtime, dlr_url=receiver.url + "/dlr"))
    send(gateway, account, {"to": "+37255519981", "messages": CHAIN[:1] + CHAIN[2:]})
    receiver.wait_for(2)
    text = httpx.get(gateway.base_url + "/metrics").text

    def value(line_start: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(line_start))

    assert value('omnirelay_omnimessages_accepted_total{surface="messente"}') == 1
    assert value('omnirelay_attempts_sent_total{channel="viber",outcome="accepted"}') == 1
    assert value('omnirelay_attempts_sent_total{channel="sms",outcome="accepted"}') == 1
    wait_until(lambda: 'omnirelay_webhooks_total{kind="dlr",result="delivered"} 2.0'
               in httpx.get(gateway.base_url + "/metrics").text)
