"""An unexpected error answers 500 in the surface's format and leaves the connection open.

A real uvicorn server on 127.0.0.1 and one keep-alive httpx client: the error is injected by
breaking a dependency of a handler, on a lean surface route and on a FastAPI route. The HTTP layer
does not depend on the database, so these run on SQLite only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnirelay.store.queries import Account
from tests.support import LiveServer, create_account, make_settings, start_live_server


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[logging.LogRecord]:
        """Those of the HTTP layer: the app's and the server's (the engine's loops are not
        under test here)."""
        return [r for r in self.records
                if r.exc_info and (r.name == "omnirelay.app" or r.name.startswith("uvicorn"))]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[LiveServer, Account]]:
    server = start_live_server(make_settings(f"sqlite:///{tmp_path}/omnirelay.db"))
    try:
        yield server, server.call(create_account(server.runtime))
    finally:
        server.stop()


@pytest.fixture
def records() -> Iterator[Records]:
    # uvicorn's logger does not propagate to the root logger, so both are watched directly.
    handler = Records()
    loggers = [logging.getLogger("uvicorn.error"), logging.getLogger("omnirelay.app")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def local_address(response: httpx.Response) -> Any:
    return response.extensions["network_stream"].get_extra_info("client_addr")


def broken(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected failure")


def server_connections(server: LiveServer) -> int:
    return len(server.server.server_state.connections)


def test_a_500_on_a_surface_route_keeps_the_connection(live: tuple[LiveServer, Account],
                                                      records: Records,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server, account = live
    body = {"to": "+37255512345", "messages": [{"channel": "sms", "text": "hi"}]}
    auth = (account.api_username, account.api_password)
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        monkeypatch.setattr(server.runtime, "accept", broken)
        failed = client.post("/v1/omnimessage", json=body, auth=auth)
        monkeypatch.undo()
        sent = client.post("/v1/omnimessage", json=body, auth=auth)
        same_socket = local_address(failed) == local_address(sent)
        connections = server_connections(server)
    assert failed.status_code == 500
    assert failed.json()["errors"][0]["code"] == "104"
    assert "connection" not in failed.headers
    assert sent.status_code == 201
    assert same_socket and connections == 1
    [logged] = records.tracebacks()
    assert logged.name == "omnirelay.app" and "injected failure" in str(logged.exc_info[1])  # type: ignore[index]


def test_a_500_on_a_fastapi_route_keeps_the_connection(live: tuple[LiveServer, Account],
                                                      records: Records,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server, _account = live
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        monkeypatch.setattr(server.runtime, "readiness", broken)
        failed = client.get("/health/ready")
        connections_after_error = server_connections(server)
        monkeypatch.undo()
        ready = client.get("/health/ready")
        same_socket = local_address(failed) == local_address(ready)
    assert failed.status_code == 500
    assert failed.json()["errors"][0]["code"] == "104"
    assert "connection" not in failed.headers
    assert ready.status_code == 200
    assert same_socket
    assert connections_after_error == 1
    [logged] = records.tracebacks()
    assert logged.name == "omnirelay.app"
    assert not [r for r in records.records if r.name.startswith("uvicorn")]


def test_a_500_on_the_twilio_surface_is_in_twilio_format(live: tuple[LiveServer, Account],
                                                        records: Records,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server, account = live
    auth = (account.twilio_account_sid, account.twilio_auth_token)
    path = f"/2010-04-01/Accounts/{account.twilio_account_sid}/Messages.json"
    form = {"To": "+37255512345", "From": "Acme", "Body": "hi"}
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        monkeypatch.setattr(server.runtime, "accept", broken)
        failed = client.post(path, data=form, auth=auth)
        monkeypatch.undo()
        sent = client.post(path, data=form, auth=auth)
        same_socket = local_address(failed) == local_address(sent)
    assert (failed.status_code, failed.json()["code"]) == (500, 20500)
    assert sent.status_code == 201
    assert same_socket
    assert len(records.tracebacks()) == 1
