"""The operator API over live HTTP, on SQLite and PostgreSQL: off without a token, refused with
anything but the token, account lifecycle with each change effective at once, and the operator's
view of every account's history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from omnirelay.core.delivery import InboundMessage
from omnirelay.core.timefmt import utcnow
from tests.support import (
    LiveServer,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

TOKEN = "operator-token-for-tests-0123456789"
ADMIN_PATHS = [("GET", "/admin/v1/accounts"), ("POST", "/admin/v1/accounts"),
               ("GET", "/admin/v1/accounts/acme"), ("DELETE", "/admin/v1/accounts/acme"),
               ("POST", "/admin/v1/accounts/acme/rotate"), ("GET", "/admin/v1/connectors"),
               ("GET", "/admin/v1/omnimessages?account=acme"), ("GET", "/admin/v1/inbound"),
               ("GET", "/admin/v1/webhooks?account=acme")]


@pytest.fixture
def admin_server(database_url: str) -> Iterator[LiveServer]:
    live = start_live_server(make_settings(database_url, admin={"token": TOKEN}))
    yield live
    live.stop()


def operator(server: LiveServer, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + "/admin/v1",
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)


def customer(server: LiveServer, username: str, password: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + "/v1", auth=(username, password), timeout=10)


def send_ok(server: LiveServer, username: str, password: str) -> int:
    with customer(server, username, password) as api:
        return api.post("/omnimessage", json={
            "to": "+37255512345", "messages": [{"channel": "sms", "text": "hi"}]}).status_code


def test_without_a_token_there_is_no_operator_api(server: LiveServer, account: Any) -> None:
    for method, path in ADMIN_PATHS:
        answer = httpx.request(method, server.base_url + path,
                               headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 404, (method, path, answer.text)


def test_only_the_token_opens_it(admin_server: LiveServer) -> None:
    account = admin_server.call(create_account(admin_server.runtime))
    attempts = {
        "none": {},
        "wrong token": {"Authorization": "Bearer " + TOKEN[:-1] + "x"},
        "token as basic": {"Authorization": "Basic " + TOKEN},
        "account credentials": {"Authorization": httpx.BasicAuth(
            account.api_username, account.api_password)._auth_header},
        "account password as bearer": {"Authorization": f"Bearer {account.api_password}"},
        "bearer without a token": {"Authorization": "Bearer"},
    }
    for name, headers in attempts.items():
        for method, path in ADMIN_PATHS:
            answer = httpx.request(method, admin_server.base_url + path, headers=headers,
                                   json={} if method == "POST" else None)
            assert answer.status_code == 401, (name, method, path, answer.text)
            assert answer.json()["errors"][0]["code"] == "103"


def test_account_lifecycle_each_change_effective_at_once(admin_server: LiveServer) -> None:
    server = admin_server
    with operator(server) as admin:
        created = admin.post("/accounts", json={
            "name": "shop", "default_sender": "Shop", "inbound_numbers": ["+372 5550 0001"]})
        assert created.status_code == 201, created.text
        creds = created.json()
        assert send_ok(server, creds["api_username"], creds["api_password"]) == 201
        assert admin.post("/accounts", json={"name": "shop"}).status_code == 409

        listed = admin.get("/accounts").json()["accounts"]
        assert [a["name"] for a in listed] == ["shop"]
        assert not {"api_password", "twilio_auth_token", "inbound_secret"} & set(listed[0])
        shown = admin.get("/accounts/shop").json()
        assert (shown["state"], shown["inbound_numbers"]) == ("active", ["+37255500001"])

        changed = admin.patch("/accounts/shop", json={"default_sender": "Shop2",
                                                      "inbound_numbers": []})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["default_sender"], changed.json()["inbound_numbers"]) == (
            "Shop2", [])
        assert admin.patch("/accounts/shop", json={"dlr_url": "not a url"}).status_code == 400
        assert admin.patch("/accounts/shop", json={"colour": "red"}).status_code == 400

        rotated = admin.post("/accounts/shop/rotate", json={"what": "api-password"}).json()
        assert rotated["api_password"] != creds["api_password"]
        assert rotated["twilio_auth_token"] == creds["twilio_auth_token"]
        assert send_ok(server, creds["api_username"], creds["api_password"]) == 401
        assert send_ok(server, creds["api_username"], rotated["api_password"]) == 201
        assert admin.post("/accounts/shop/rotate", json={"what": "everything"}).status_code == 400

        assert admin.post("/accounts/shop/disable").json()["state"] == "disabled"
        assert send_ok(server, creds["api_username"], rotated["api_password"]) == 401
        twilio = httpx.get(f"{server.base_url}/2010-04-01/Accounts/{creds['twilio_account_sid']}"
                           "/Messages.json", auth=(creds["twilio_account_sid"],
                                                   creds["twilio_auth_token"]))
        assert twilio.status_code == 401
        assert admin.post("/accounts/shop/enable").json()["state"] == "active"
        assert send_ok(server, creds["api_username"], rotated["api_password"]) == 201

        assert admin.delete("/accounts/shop").status_code == 204
        assert send_ok(server, creds["api_username"], rotated["api_password"]) == 401
        assert admin.get("/accounts/shop").status_code == 404
        assert admin.get("/accounts").json()["accounts"] == []
        assert admin.delete("/accounts/shop").status_code == 404
        again = admin.post("/accounts", json={"name": "shop"})  # the name is free again
        assert again.status_code == 201
        assert again.json()["api_username"] != creds["api_username"]


def test_the_operator_reads_every_accounts_history(admin_server: LiveServer) -> None:
    server = admin_server
    first = server.call(create_account(server.runtime, "first"))
    second = server.call(create_account(server.runtime, "second"))
    later = (utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sent: dict[str, str] = {}
    for account in (first, second):
        with customer(server, account.api_username, account.api_password) as api:
            sent[account.name] = api.post("/omnimessage", json={
                "to": "+37255512345", "messages": [{"channel": "sms", "text": "hi"}],
                "time_to_send": later}).json()["omnimessage_id"]
    server.call(server.runtime.sink.store_inbound([
        InboundMessage("sms", "+37255512345", "+37255599999", "to nobody", utcnow())]))
    with operator(server) as admin:
        for account in (first, second):
            page = admin.get("/omnimessages", params={"account": account.name}).json()
            assert [m["omnimessage_id"] for m in page["omnimessages"]] == [sent[account.name]]
            whole = admin.get(f"/omnimessage/{sent[account.name]}")
            assert whole.status_code == 200 and whole.json()["to"] == "+37255512345"
        missing = admin.get("/omnimessages")
        assert missing.status_code == 400
        assert missing.json()["errors"][0]["source"] == "account"
        assert admin.get("/omnimessages", params={"account": "nobody"}).status_code == 404
        ownerless = wait_until(lambda: admin.get(
            "/inbound", params={"account": "none"}).json()["inbound"])
        assert [i["text"] for i in ownerless] == ["to nobody"]
        assert admin.get("/inbound", params={"account": "first"}).json()["inbound"] == []
        health = admin.get("/connectors").json()
        assert health["ready"] is True and "dispatcher" in health["tasks"]
