"""One account's hostile requests never fail another account's (issue 14).

Requests accepted at the same time share one group commit, so a value that passed validation
but failed in the store (a deadline past year 9999, a NUL in a PostgreSQL text column) used to
fail every request in the batch, from any account. Here one account sends such requests from
two connections while another sends valid ones from two more: every valid one is accepted and
stored, every hostile one gets a 400 in its surface's format and stores nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import func, select

from omnirelay.store.queries import Account
from omnirelay.store.tables import omnimessages
from tests.support import LiveServer, create_account

TO = "+37255512345"
ROUNDS = 60  # per connection
FORM = {"content-type": "application/x-www-form-urlencoded"}

# Messente bodies that once reached the store and failed there
MESSENTE_POISON: list[dict[str, Any]] = [
    {"to": TO, "time_to_send": "9999-12-31T23:59:59Z",
     "messages": [{"channel": "sms", "text": "far"}]},
    {"to": TO, "messages": [{"channel": "sms", "sender": "Ev\u0000il", "text": "nul"}]},
    {"to": TO, "dlr_url": "https://example.com/\u0000", "messages": [{"channel": "sms",
                                                                      "text": "nul"}]},
    {"to": TO, "messages": [{"channel": "sms", "text": "a\u0000b"}]},
]
# Twilio forms of the same kind
TWILIO_POISON: list[str] = [
    "To=%2B37255512345&From=Evil&Body=far&ScheduleType=fixed&SendAt=9999-12-31T23:59:59Z",
    "To=%2B37255512345&From=Ev%00il&Body=nul",
    "To=%2B37255512345&From=Evil&Body=nul&StatusCallback=https://example.com/%00",
    "To=%2B37255512345&From=Evil&Body=a%00b",
]


def stored_for(server: LiveServer, account: Account) -> int:
    def work(conn: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(omnimessages).where(
            omnimessages.c.account_id == account.id)).scalar_one())

    return server.call(server.runtime.db.read(work))


def run_together(workers: list[Callable[[], None]]) -> None:
    """Start every worker at once and re-raise the first failure."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(worker: Callable[[], None]) -> None:
        barrier.wait(timeout=30)
        try:
            worker()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a worker did not finish within 120 s"
    if errors:
        raise errors[0]


def test_hostile_account_never_fails_another_accounts_requests(server: LiveServer) -> None:
    good = server.call(create_account(server.runtime, "good"))
    evil = server.call(create_account(server.runtime, "evil"))
    twilio_path = "/2010-04-01/Accounts/{}/Messages.json"
    good_answers: list[httpx.Response] = []
    hostile_answers: list[tuple[str, httpx.Response]] = []
    lock = threading.Lock()

    def valid(connection: int) -> Callable[[], None]:
        def work() -> None:
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                for i in range(ROUNDS):
                    if (i + connection) % 2:
                        response = client.post(
                            "/v1/omnimessage", auth=(good.api_username, good.api_password),
                            json={"to": TO, "messages": [{"channel": "sms", "sender": "Good",
                                                          "text": f"valid {connection}/{i}"}]})
                    else:
                        response = client.post(
                            twilio_path.format(good.twilio_account_sid),
                            auth=(good.twilio_account_sid, good.twilio_auth_token),
                            content=f"To=%2B37255512345&From=Good&Body=valid+{i}".encode(),
                            headers=FORM)
                    with lock:
                        good_answers.append(response)
        return work

    def hostile(connection: int) -> Callable[[], None]:
        def work() -> None:
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                for i in range(ROUNDS):
                    kind = (i + connection) % (len(MESSENTE_POISON) + len(TWILIO_POISON))
                    if kind < len(MESSENTE_POISON):
                        response = client.post(
                            "/v1/omnimessage", auth=(evil.api_username, evil.api_password),
                            json=MESSENTE_POISON[kind])
                        surface = "messente"
                    else:
                        response = client.post(
                            twilio_path.format(evil.twilio_account_sid),
                            auth=(evil.twilio_account_sid, evil.twilio_auth_token),
                            content=TWILIO_POISON[kind - len(MESSENTE_POISON)].encode(),
                            headers=FORM)
                        surface = "twilio"
                    with lock:
                        hostile_answers.append((surface, response))
        return work

    run_together([valid(0), valid(1), hostile(0), hostile(1)])

    assert len(good_answers) == len(hostile_answers) == 2 * ROUNDS
    failed = [(r.status_code, r.text) for r in good_answers if r.status_code != 201]
    assert not failed, f"{len(failed)} valid requests failed, e.g. {failed[:3]}"
    for surface, response in hostile_answers:
        assert response.status_code == 400, response.text
        if surface == "messente":
            assert response.json()["errors"][0]["code"] == "105", response.text
        else:
            assert set(response.json()) == {"code", "message", "more_info", "status"}
    assert stored_for(server, good) == 2 * ROUNDS
    assert stored_for(server, evil) == 0


def test_a_poisoned_bulk_item_never_rejects_the_good_ones(server: LiveServer) -> None:
    account = server.call(create_account(server.runtime))
    items: list[dict[str, Any]] = [
        {"to": TO, "messages": [{"channel": "sms", "text": f"item {i}"}]} for i in range(1000)]
    poisoned = {100: MESSENTE_POISON[0], 500: MESSENTE_POISON[1], 700: MESSENTE_POISON[2],
                999: MESSENTE_POISON[3]}
    for index, item in poisoned.items():
        items[index] = item
    response = httpx.post(server.base_url + "/v1/omnimessages", json={"messages": items},
                          auth=(account.api_username, account.api_password), timeout=60)
    assert response.status_code == 201, response.text
    results = response.json()["messages"]
    assert len(results) == 1000
    sources = {i: r["errors"][0]["source"] for i, r in enumerate(results) if "errors" in r}
    assert sources == {100: "messages[100].time_to_send",
                       500: "messages[500].messages[0].sender",
                       700: "messages[700].dlr_url",
                       999: "messages[999].messages[0].text"}
    assert all("omnimessage_id" in r for i, r in enumerate(results) if i not in poisoned)
    assert stored_for(server, account) == 996
