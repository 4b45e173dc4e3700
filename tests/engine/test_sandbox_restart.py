"""The sandbox keeps the receipts it owes across a crash: SIGKILL the gateway while every receipt
is still pending, restart it, and each message gets the status its number's sandbox rule gives —
none is left to expire. Real processes; SQLite and PostgreSQL."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from omnirelay.channels.sandbox import outcome_for
from omnirelay.store.tables import attempts
from tests.cli.runner import create_account_cli  # the command in-process: setup, not under test
from tests.engine.test_crash_safety import RECOVERY, query
from tests.processes import start_gateway, write_config
from tests.support import wait_until

DELAY_MS = 15_000  # long enough that the kill lands before any receipt is due
# (channel, last digits) -> the status the sandbox rules promise
CASES = [("sms", "2345"), ("sms", "9991"), ("sms", "9993"), ("sms", "9994"),
         ("viber", "2345"), ("viber", "9994"), ("viber", "9981"), ("whatsapp", "9991")]
PER_CASE = 5


def states(database_url: str) -> dict[str, int]:
    return dict(query(database_url, select(attempts.c.state, func.count())
                      .group_by(attempts.c.state)))


@pytest.mark.slow
def test_receipts_pending_at_a_sigkill_arrive_after_the_restart(
        database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", database_url, engine=RECOVERY,
                          sandbox={"delay_ms": DELAY_MS})
    account = create_account_cli(config, "restart")
    auth = (account["api_username"], account["api_password"])
    log = tmp_path / "gateway.log"
    process, base = start_gateway(config, log)
    expected: dict[str, tuple[str, str]] = {}
    try:
        with httpx.Client(base_url=base, auth=auth, timeout=10) as client:
            for channel, digits in CASES:
                for i in range(PER_CASE):
                    to = f"+3725{i}55{digits}"
                    text: Any = {"body": "w"} if channel == "whatsapp" else "hello"
                    response = client.post("/v1/omnimessage", json={
                        "to": to, "messages": [{"channel": channel, "text": text}]})
                    assert response.status_code == 201, response.text
                    rule = outcome_for(channel, to).status
                    assert rule is not None
                    expected[response.json()["omnimessage_id"]] = (channel, rule.value)
        total = len(expected)
        wait_until(lambda: states(database_url).get("sent") == total, timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        # The kill came with every receipt still owed: none was stored before it.
        assert states(database_url) == {"sent": total}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    process, base = start_gateway(config, log)
    try:
        wait_until(lambda: states(database_url) == {"done": total},
                   timeout=DELAY_MS / 1000 + 30, interval=0.5)
        rows = query(database_url, select(attempts.c.omnimessage_id, attempts.c.channel,
                                          attempts.c.status))
        assert {om: (channel, status) for om, channel, status in rows} == expected
        assert "EXPIRED" not in {status for _, _, status in rows}
    finally:
        process.terminate()
        process.wait(10)
