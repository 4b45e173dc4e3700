"""The access log (`access_log = true`) and JSON log lines (`log_format = "json"`).

Requests go over HTTP to a real server on 127.0.0.1; the lines are read from the logger the
server writes them to (caplog), or, for the JSON format, from a real `omnirelay serve`'s stderr.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omnirelay.app import create_app
from omnirelay.logs import ACCESS_LOGGER, JsonFormatter, formatter
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account
from tests.cli.runner import create_account_cli  # the command in-process: setup, not under test
from tests.processes import start_gateway, write_config
from tests.support import (
    LiveServer,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)
from tests.templates import premigrate

PHONE = "+37251234567"
TWILIO_TO = "+15558675310"
TEXT = "the secret text of the message"


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_live_server(make_settings(f"sqlite:///{tmp_path}/omnirelay.db",
                                            access_log=True))
    yield server
    server.stop()


def access_records(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    def enough() -> list[logging.LogRecord] | None:
        found = [r for r in caplog.records if r.name == ACCESS_LOGGER]
        return found if len(found) >= count else None

    # The line is written once the answer has gone out, so the client can see it first.
    records: list[logging.LogRecord] = wait_until(enough, timeout=10)
    return records


def rendered(record: logging.LogRecord) -> str:
    return formatter("text").format(record) + "\n" + JsonFormatter().format(record)


def secrets_of(account: Account) -> list[str]:
    return [account.api_username, account.api_password, account.twilio_auth_token,
            account.twilio_account_sid]


def test_access_lines_name_the_route_status_and_account_and_nothing_private(
        logged: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    account = logged.call(create_account(logged.runtime))
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    messente = (account.api_username, account.api_password)
    twilio_auth = (account.twilio_account_sid, account.twilio_auth_token)
    base = logged.base_url
    sent = httpx.post(base + "/v1/omnimessage", auth=messente, json={
        "to": PHONE, "messages": [{"channel": "sms", "text": TEXT}]})
    assert sent.status_code == 201
    refused = httpx.post(base + "/v1/omnimessage", auth=(account.api_username, "wrong-password"),
                         json={"to": PHONE, "messages": [{"channel": "sms", "text": TEXT}]})
    assert refused.status_code == 401
    unknown = httpx.get(base + f"/v1/omnimessage/{uuid.uuid4()}/status", auth=messente)
    assert unknown.status_code == 404
    no_route = httpx.get(base + f"/v1/numbers/{PHONE}", auth=messente)
    assert no_route.status_code == 404
    listed = httpx.get(base + f"/2010-04-01/Accounts/{account.twilio_account_sid}/Messages.json",
                       params={"To": TWILIO_TO}, auth=twilio_auth)
    assert listed.status_code == 200

    records = access_records(caplog, 5)
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert [(f["method"], f["path"], f["status"], f["account"]) for f in fields] == [
        ("POST", "/v1/omnimessage", 201, account.name),
        ("POST", "/v1/omnimessage", 401, None),
        ("GET", "/v1/omnimessage/{omnimessage_id}/status", 404, account.name),
        ("GET", None, 404, None),
        ("GET", "/2010-04-01/Accounts/{account_sid}/Messages.json", 200, account.name),
    ]
    assert all(isinstance(f["duration_ms"], float) and f["duration_ms"] >= 0 for f in fields)
    for record in records:
        line = rendered(record)
        for private in [*secrets_of(account), "wrong-password", PHONE, PHONE[1:], TWILIO_TO,
                        TWILIO_TO[1:], TEXT, sent.json()["omnimessage_id"], "To="]:
            assert private not in line, (private, line)
    # The text line: method, template, status, duration, account.
    words = records[0].getMessage().split()
    assert words[:3] == ["POST", "/v1/omnimessage", "201"] and words[3].endswith("ms")
    assert words[4:] == [f"account={account.name}"]
    assert records[3].getMessage().split()[1] == "-"  # no route: no path at all


@pytest.mark.parametrize("enabled", [False, True])
async def test_the_access_log_is_off_unless_enabled(tmp_path: Path, enabled: bool,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # In-process, so that the request is over (its line written or not) when the call returns.
    overrides = {"access_log": True} if enabled else {}
    premigrate(f"sqlite:///{tmp_path}/omnirelay.db")
    runtime = Runtime(make_settings(f"sqlite:///{tmp_path}/omnirelay.db", **overrides))
    runtime.migrate()
    account = await create_account(runtime)
    await runtime.start(workers=False)
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    try:
        transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.get(f"/v1/omnimessage/{uuid.uuid4()}/status",
                                        auth=(account.api_username, account.api_password))
    finally:
        await runtime.stop()
        runtime.close()
    assert response.status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert lines == ([f"GET /v1/omnimessage/{{omnimessage_id}}/status 404 "
                      f"{lines[0].split()[3]} account=acme"] if enabled else [])


def test_json_lines_carry_the_exception_text() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        record = logging.LogRecord("omnirelay.test", logging.ERROR, __file__, 1,
                                   "it broke on %s", ("purpose",), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert set(entry) == {"time", "level", "logger", "message", "exception"}
    assert entry["level"] == "ERROR" and entry["logger"] == "omnirelay.test"
    assert entry["message"] == "it broke on purpose"
    assert entry["time"].endswith("Z") and entry["time"][:2] == "20"
    assert "Traceback" in entry["exception"] and "ZeroDivisionError" in entry["exception"]


@pytest.mark.slow
def test_serve_writes_one_json_object_per_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/omnirelay.db")
    config.write_text(config.read_text().replace('log_level = "warning"', 'log_level = "info"')
                      + 'log_format = "json"\naccess_log = true\n')
    credentials = create_account_cli(config, "acme")
    log = tmp_path / "serve.log"
    process, base = start_gateway(config, log=log)
    try:
        sent = httpx.post(base + "/v1/omnimessage", json={
            "to": PHONE, "messages": [{"channel": "sms", "text": TEXT}]},
            auth=(credentials["api_username"], credentials["api_password"]))
        assert sent.status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries), entries
    loggers = {e["logger"] for e in entries}
    assert "uvicorn.error" in loggers, loggers  # uvicorn's own lines have the format too
    access = [e for e in entries if e["logger"] == ACCESS_LOGGER]
    assert {"method": "POST", "path": "/v1/omnimessage", "status": 201,
            "account": "acme"}.items() <= access[-1].items(), access
    text = log.read_text()
    for private in (credentials["api_password"], credentials["api_username"], PHONE, TEXT):
        assert private not in text
