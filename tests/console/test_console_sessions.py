"""The console's sign-in, session cookie and CSRF check, over real HTTP, on SQLite and PostgreSQL.

The console calls the public endpoints with its cookie; these tests do the same with httpx.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from omnirelay import account_admin as ops
from omnirelay.config import load_settings
from omnirelay.console.limits import LIMIT, FailedSignIns
from omnirelay.console.sessions import COOKIE
from tests.support import LiveServer, create_account, make_settings, start_live_server

TOKEN = "operator-token-for-console-tests-0123456789"
SEND = {"to": "+37255512345", "messages": [{"channel": "sms", "text": "hi"}]}


@pytest.fixture
def gateway(database_url: str) -> Iterator[LiveServer]:
    live = start_live_server(make_settings(database_url, admin={"token": TOKEN}))
    yield live
    live.stop()


def sign_in(live: LiveServer, **credentials: str) -> tuple[httpx.Client, dict[str, object]]:
    client = httpx.Client(base_url=live.base_url)
    answer = client.post("/console/sign-in", json=credentials)
    assert answer.status_code == 200, answer.text
    return client, answer.json()


def test_account_session_reads_and_sends_through_the_public_endpoints(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime, "acme", api_password="pw-acme-secret"))
    client = httpx.Client(base_url=gateway.base_url)
    answer = client.post("/console/sign-in", json={"username": account.api_username,
                                                   "password": "pw-acme-secret"})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here
    assert answer.headers["cache-control"] == "no-store"
    session = answer.json()
    assert session["kind"] == "account" and session["name"] == "acme"
    csrf = str(session["csrf_token"])

    assert client.get("/v1/omnimessages").json() == {"omnimessages": [], "next": None}
    refused = client.post("/v1/omnimessage", json=SEND)  # no CSRF token
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["code"] == "102"
    assert client.post("/v1/omnimessage", json=SEND,
                       headers={"X-CSRF-Token": ("y" if csrf[0] == "x" else "x") + csrf[1:]}
                       ).status_code == 403
    sent = client.post("/v1/omnimessage", json=SEND, headers={"X-CSRF-Token": csrf})
    assert sent.status_code == 201, sent.text
    listed = client.get("/v1/omnimessages").json()["omnimessages"]
    assert [m["omnimessage_id"] for m in listed] == [sent.json()["omnimessage_id"]]
    assert client.get("/console/session").json()["name"] == "acme"

    # An account session opens nothing of the operator's.
    assert client.get("/admin/v1/accounts").status_code == 401


def test_wrong_credentials_and_forged_cookies_are_refused(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime, "acme", api_password="pw-acme-secret"))
    client = httpx.Client(base_url=gateway.base_url)
    for body in ({"username": account.api_username, "password": "wrong"},
                 {"username": "nobody", "password": "pw-acme-secret"},
                 {"token": "not-the-operator-token-at-all-0000"}):
        answer = client.post("/console/sign-in", json=body)
        assert answer.status_code == 401, body
        assert "set-cookie" not in answer.headers
    assert client.post("/console/sign-in", json={}).status_code == 400
    assert client.post("/console/sign-in", content=b"username=a&password=b", headers={
        "content-type": "application/x-www-form-urlencoded"}).status_code == 400
    # Another site's page cannot sign the viewer in (login CSRF).
    assert client.post("/console/sign-in", json={"username": account.api_username,
                                                 "password": "pw-acme-secret"},
                       headers={"origin": "https://evil.example"}).status_code == 403

    good = sign_in(gateway, username=account.api_username, password="pw-acme-secret")[0]
    value = good.cookies[COOKIE]
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    for cookie in (forged, "v1.e30.abc", "garbage", "x" * 5000):
        stranger = httpx.Client(base_url=gateway.base_url, cookies={COOKIE: cookie})
        answer = stranger.get("/v1/omnimessages")
        assert answer.status_code == 401, cookie[:20]
        # No Basic challenge: the browser must not pop up a password dialog.
        assert "www-authenticate" not in answer.headers
        assert stranger.get("/console/session").status_code == 401


def test_basic_auth_takes_precedence_and_is_unchanged(gateway: LiveServer) -> None:
    a = gateway.call(create_account(gateway.runtime, "acme", api_password="pw-acme-secret"))
    b = gateway.call(create_account(gateway.runtime, "beta", api_password="pw-beta-secret"))
    client, _ = sign_in(gateway, username=a.api_username, password="pw-acme-secret")
    # With an Authorization header the cookie is not looked at: B's credentials read B's view.
    answer = client.get("/v1/omnimessages", auth=(b.api_username, "pw-beta-secret"))
    assert answer.status_code == 200
    wrong = client.get("/v1/omnimessages", auth=(b.api_username, "nope"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")


def test_sessions_end_when_the_credential_changes_or_on_sign_out(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime, "acme", api_password="pw-acme-secret"))
    client, session = sign_in(gateway, username=account.api_username, password="pw-acme-secret")
    csrf = {"X-CSRF-Token": str(session["csrf_token"])}
    assert client.post("/console/sign-out").status_code == 403  # no CSRF token
    assert client.get("/v1/omnimessages").status_code == 200
    out = client.post("/console/sign-out", headers=csrf)
    assert out.status_code == 200
    assert '"cache"' in out.headers["clear-site-data"]
    assert f'{COOKIE}=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/v1/omnimessages").status_code == 401

    client, _ = sign_in(gateway, username=account.api_username, password="pw-acme-secret")
    gateway.call(ops.rotate_secrets(gateway.runtime, "acme", "api-password"))
    gateway.runtime.accounts.forget()
    assert client.get("/v1/omnimessages").status_code == 401
    assert client.get("/console/session").status_code == 401


def test_operator_session_reads_every_account_through_the_operator_api(gateway: LiveServer) -> None:
    gateway.call(create_account(gateway.runtime, "acme"))
    client, session = sign_in(gateway, token=TOKEN)
    assert session["kind"] == "operator"
    names = [a["name"] for a in client.get("/admin/v1/accounts").json()["accounts"]]
    assert names == ["acme"]
    assert client.get("/admin/v1/omnimessages", params={"account": "acme"}).status_code == 200
    # The operator's state-changing requests need the token too.
    assert client.post("/admin/v1/accounts", json={"name": "beta"}).status_code == 403
    made = client.post("/admin/v1/accounts", json={"name": "beta"},
                       headers={"X-CSRF-Token": str(session["csrf_token"])})
    assert made.status_code == 201
    # The operator is no account: the account endpoints refuse the session.
    assert client.get("/v1/omnimessages").status_code == 401


def test_secure_cookie_behind_https(tmp_path: object, database_url: str) -> None:
    live = start_live_server(make_settings(database_url, public_url="https://sms.example.com"))
    try:
        account = live.call(create_account(live.runtime, "acme", api_password="pw-acme-secret"))
        answer = httpx.post(live.base_url + "/console/sign-in", json={
            "username": account.api_username, "password": "pw-acme-secret"})
        assert "Secure" in answer.headers["set-cookie"]
    finally:
        live.stop()


def test_console_is_on_in_development_and_off_in_production_unless_set() -> None:
    assert load_settings(None, environ={}).console.enabled
    production = {"mode": "production", "secret_key": "s" * 32}
    assert not load_settings(None, environ={}, overrides=production).console.enabled
    assert load_settings(None, environ={"OMNIRELAY_CONSOLE__ENABLED": "true"},
                         overrides=production).console.enabled
    assert not load_settings(None, environ={"OMNIRELAY_CONSOLE__ENABLED": "false"}).console.enabled


def test_console_off_means_no_page_and_no_cookie_auth(tmp_path: object, database_url: str) -> None:
    live = start_live_server(make_settings(database_url, console={"enabled": False}))
    try:
        assert httpx.get(live.base_url + "/console").status_code == 404
        account = live.call(create_account(live.runtime, "acme", api_password="pw-acme-secret"))
        assert httpx.post(live.base_url + "/console/sign-in", json={
            "username": account.api_username, "password": "pw-acme-secret"}).status_code == 404
    finally:
        live.stop()


def test_page_and_assets_are_served_from_the_package(gateway: LiveServer) -> None:
    page = httpx.get(gateway.base_url + "/console")
    assert page.status_code == 200 and "console.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another origin
    for name in ("console.js", "console.css", "favicon.svg"):
        assert httpx.get(f"{gateway.base_url}/console/static/{name}").status_code == 200
    assert httpx.get(gateway.base_url + "/console/static/../app.py").status_code == 404


def test_failed_sign_ins_are_bounded_per_address(gateway: LiveServer) -> None:
    account = gateway.call(create_account(gateway.runtime, "acme", api_password="pw-acme-secret"))
    client = httpx.Client(base_url=gateway.base_url)
    for _ in range(LIMIT):
        assert client.post("/console/sign-in", json={"username": account.api_username,
                                                     "password": "guess"}).status_code == 401
    # Now even the right password waits: guessing through the form is bounded.
    blocked = client.post("/console/sign-in", json={"username": account.api_username,
                                                    "password": "pw-acme-secret"})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60


def test_failure_window_forgets_old_failures() -> None:
    limits = FailedSignIns(limit=2, window=10.0, capacity=2)
    limits.failed("a", now=0.0)
    assert limits.retry_after("a", now=1.0) == 0
    limits.failed("a", now=1.0)
    assert limits.retry_after("a", now=2.0) == 8
    assert limits.retry_after("a", now=10.5) == 0  # the first failure has aged out
    limits.failed("b", now=11.0)
    limits.failed("c", now=11.0)  # capacity 2: "a", the least recent, is forgotten
    assert limits.retry_after("a", now=11.0) == 0
