"""The console in a real browser (headless Chromium): sign in, send a fallback chain from the
composer, follow it to delivery, let its reports die and redeliver them, and the refusals.

One gateway for the module (SQLite; the session and CSRF logic is tested on both databases in
test_console_sessions.py). Each page is saved as a screenshot at laptop and phone width into
tests/artifacts/console/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.conftest import LAPTOP, PHONE
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

TOKEN = "operator-token-for-console-browser-0123456789"
PASSWORD_A = "console-password-of-acme"
PASSWORD_B = "console-password-of-beta"
FALLBACK = "+37255519981"  # the sandbox fails chat channels for it and delivers SMS
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(status=500).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    path = tmp_path_factory.mktemp("console") / "omnirelay.db"
    # One try per report: a failing receiver makes them dead at once.
    live = start_live_server(make_settings(f"sqlite:///{path}", admin={"token": TOKEN},
                                           webhooks={"max_tries": 1}))
    live.call(create_account(live.runtime, "acme", api_username="acme-user",
                             api_password=PASSWORD_A))
    live.call(create_account(live.runtime, "beta", api_username="beta-user",
                             api_password=PASSWORD_B))
    yield live
    live.stop()


@pytest.fixture
def page(browser: Any, gateway: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP, base_url=gateway.base_url)
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], errors  # no script error on any page


def shoot(page: Any, artifacts: Path, name: str) -> None:
    for width, size in (("laptop", LAPTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(LAPTOP)


def sign_in(page: Any, username: str, password: str) -> None:
    page.goto("/console")
    page.fill("#sign-in-account [name=username]", username)
    page.fill("#sign-in-account [name=password]", password)
    page.click("#sign-in-account button[type=submit]")
    page.wait_for_selector("#nav a[href='#/messages']")


def reports(gateway: LiveServer, omnimessage_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{gateway.base_url}/v1/omnimessage/{omnimessage_id}",
                       auth=("acme-user", PASSWORD_A))
    assert answer.status_code == 200
    found: list[dict[str, Any]] = answer.json()["reports"]
    return found


def test_sign_in_is_refused_with_wrong_credentials(page: Any, artifacts: Path) -> None:
    page.goto("/console")
    shoot(page, artifacts, "sign-in")
    page.fill("#sign-in-account [name=username]", "acme-user")
    page.fill("#sign-in-account [name=password]", "not-the-password")
    page.click("#sign-in-account button[type=submit]")
    alert = page.locator("[role=alert]")
    alert.filter(has_text="Sign-in refused").wait_for()
    assert page.locator("#nav").is_hidden()
    assert page.context.cookies() == []
    page.fill("#sign-in-operator [name=token]", "wrong-operator-token-000000000")
    page.click("#sign-in-operator button[type=submit]")
    alert.filter(has_text="wrong operator token").wait_for()
    assert page.context.cookies() == []


def test_fallback_chain_from_composer_to_redelivered_reports(
        page: Any, gateway: LiveServer, receiver: WebhookReceiver, artifacts: Path) -> None:
    sign_in(page, "acme-user", PASSWORD_A)
    cookie = next(c for c in page.context.cookies() if c["name"] == "omnirelay_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
    page.locator(".empty").wait_for()  # no messages yet: the empty state says what to do
    assert "curl" in page.locator(".empty").inner_text()
    shoot(page, artifacts, "messages-empty")

    page.click("#nav a[href='#/compose']")
    page.fill("#composer [name=to]", FALLBACK)
    page.fill("#composer [name=dlr_url]", receiver.url + "/dlr")
    channels = page.locator("#composer fieldset [name=channel]")
    assert [channels.nth(i).input_value() for i in range(channels.count())] == ["viber", "sms"]
    shoot(page, artifacts, "composer")
    page.click("#composer button[type=submit]")
    link = page.locator("#sent-link")
    omnimessage_id = link.inner_text()

    page.click("#nav a[href='#/messages']")
    row = page.locator("tbody tr", has_text=FALLBACK)
    row.wait_for()
    # Live refresh: the list shows the final statuses without a reload.
    row.filter(has_text="DELIVRD").wait_for()
    assert "UNDELIV" in row.inner_text()
    shoot(page, artifacts, "messages")

    row.get_by_role("link", name="Open").click()
    page.wait_for_url(re.compile(f"#/message/{omnimessage_id}$"))
    chain = page.locator("ol.chain > li")
    chain.nth(1).filter(has_text="DELIVRD").wait_for()
    assert chain.count() == 2
    viber, sms = chain.nth(0), chain.nth(1)
    assert viber.locator("strong").first.inner_text() == "1. viber"
    assert sms.locator("strong").first.inner_text() == "2. sms"
    viber_steps = viber.locator(".timeline li").all_inner_texts()
    sms_steps = sms.locator(".timeline li").all_inner_texts()
    # Every status in order: viber submitted then failed; SMS started by the fallback,
    # submitted, then delivered.
    assert "submitted" in viber_steps[0]
    assert "UNDELIV" in viber_steps[-1]
    assert "started" in sms_steps[0] and "fallback" in sms_steps[0]
    assert "submitted" in sms_steps[1] and "DELIVRD" in sms_steps[-1]
    # Local time shown, UTC on hover.
    assert page.locator("ol.chain time").first.get_attribute("title").endswith("Z UTC")

    # The receiver answers 500 and each report has one try: they all die.
    wait_until(lambda: (found := reports(gateway, omnimessage_id))
               and all(r["state"] == "dead" for r in found))
    dead = len(reports(gateway, omnimessage_id))
    page.locator("table tbody tr", has_text="dead").nth(dead - 1).wait_for()
    shoot(page, artifacts, "message")

    page.click("#nav a[href='#/webhooks']")
    page.locator("tbody tr", has_text="dead").nth(dead - 1).wait_for()
    shoot(page, artifacts, "webhooks")
    receiver.status = 200
    page.get_by_role("button", name="Redeliver all dead").click()
    received = receiver.wait_for(dead)
    assert {r.json()["omnimessage_id"] for r in received} == {omnimessage_id}
    page.goto(f"/console#/message/{omnimessage_id}")
    page.locator("table tbody tr", has_text="delivered").nth(dead - 1).wait_for()
    assert page.locator("table tbody tr", has_text="dead").count() == 0

    page.click("#nav a[href='#/inbound']")
    page.locator(".empty").wait_for()
    shoot(page, artifacts, "inbound")
    page.click("#nav a[href='#/traffic']")
    page.locator("svg.chart").first.wait_for()
    figures = page.locator(".figures")
    figures.filter(has_text="Median time to delivery").filter(has_text=" s").wait_for()
    assert "100 %" in figures.inner_text()  # the one finished message was delivered
    assert page.locator("svg.chart rect").count() >= 2  # a bar by channel, one by status
    shoot(page, artifacts, "traffic")

    page.click("#sign-out")
    page.locator("#sign-in-account").wait_for()
    assert [c for c in page.context.cookies() if c["name"] == "omnirelay_console"] == []
    page.goto("/console#/messages")  # nothing is left to show after sign-out
    page.locator("#sign-in-account").wait_for()


def test_one_account_never_sees_another(page: Any, gateway: LiveServer) -> None:
    sent = httpx.post(f"{gateway.base_url}/v1/omnimessage", auth=("acme-user", PASSWORD_A),
                      json={"to": "+37255500001", "messages": [{"channel": "sms", "text": "a"}]})
    assert sent.status_code == 201
    acme_id = sent.json()["omnimessage_id"]
    sign_in(page, "beta-user", PASSWORD_B)
    page.locator(".empty").wait_for()  # beta has sent nothing
    assert "+37255500001" not in page.inner_text("main")
    page.goto(f"/console#/message/{acme_id}")
    page.locator("[role=alert]", has_text="not found").wait_for()
    status = page.evaluate("(id) => fetch('/v1/omnimessage/' + id).then(r => r.status)", acme_id)
    assert status == 404


def test_state_changing_request_without_csrf_token_is_refused(page: Any) -> None:
    sign_in(page, "acme-user", PASSWORD_A)
    send = """async (csrf) => {
        const headers = {'Content-Type': 'application/json'};
        if (csrf) headers['X-CSRF-Token'] = csrf;
        const r = await fetch('/v1/omnimessage', {method: 'POST', headers, body: JSON.stringify(
            {to: '+37255500002', messages: [{channel: 'sms', text: 'csrf'}]})});
        return r.status;
    }"""
    assert page.evaluate(send, None) == 403
    assert page.evaluate(send, "forged-token") == 403
    token = page.evaluate("fetch('/console/session').then(r => r.json()).then(s => s.csrf_token)")
    assert page.evaluate(send, token) == 201


def test_operator_sees_accounts_connectors_and_every_account(
        page: Any, gateway: LiveServer, artifacts: Path) -> None:
    page.goto("/console")
    page.fill("#sign-in-operator [name=token]", TOKEN)
    page.click("#sign-in-operator button[type=submit]")
    page.wait_for_selector("#nav a[href='#/accounts']")
    assert page.locator("#who").inner_text() == "operator"
    page.locator("tbody tr", has_text="+37255500002").wait_for()  # acme's, the first account
    page.select_option("select[name=account]", "beta")
    page.locator(".empty").wait_for()  # beta has sent nothing
    assert "+37255500002" not in page.inner_text("main")

    page.click("#nav a[href='#/accounts']")
    row = page.locator("tbody tr", has_text="beta")
    row.wait_for()
    shoot(page, artifacts, "accounts")
    row.get_by_role("button", name="Disable").click()
    row.filter(has_text="disabled").wait_for()
    denied = httpx.get(f"{gateway.base_url}/v1/omnimessages", auth=("beta-user", PASSWORD_B))
    assert denied.status_code == 401
    row.get_by_role("button", name="Enable").click()
    row.filter(has_text="active").wait_for()

    page.click("#nav a[href='#/connectors']")
    page.get_by_text("Readiness").wait_for()
    page.locator("text=ready").first.wait_for()
    shoot(page, artifacts, "connectors")
