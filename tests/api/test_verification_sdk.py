"""Number verification through the official SDK's NumberVerificationApi, on SQLite and PostgreSQL:
the PIN reaches the sandbox inside the template, right, wrong, expired, reused and throttled PINs
each get their answer, every documented error, answers checked against the spec, re-sends,
cookies, account isolation, and a loop over every 4-digit PIN that never verifies."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml
from messente_api import ApiClient, Configuration, DeliveryReportApi, NumberVerificationApi
from sqlalchemy import func, select

from omnirelay import account_admin as ops
from omnirelay.api.verification import NumberVerification
from omnirelay.channels.base import OutboundMessage
from omnirelay.core.ratelimit import SECOND_US
from omnirelay.core.timefmt import utcnow
from omnirelay.core.verification import DESTINATION_WRONG_PINS, MAX_WRONG_PINS, REMEMBER_COOKIE
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account
from omnirelay.store.retention import Retention
from omnirelay.store.tables import verification_sends, verification_throttles, verifications
from tests.api.test_account_sdk import balance, credit, set_prices
from tests.spec import SPEC_DIR
from tests.support import LiveServer, create_account, make_settings, start_live_server, wait_until

EE, EE2 = "+37255512345", "+37255512346"


@dataclass
class Clock:
    """The verification service's clock: real time plus an offset the test moves forward."""

    offset: dt.timedelta = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset


@dataclass
class Gateway:
    server: LiveServer
    clock: Clock
    service: NumberVerification
    sent: list[OutboundMessage] = field(default_factory=list)

    def texts(self, to: str) -> list[str]:
        return [m.content["text"] for m in list(self.sent) if m.to == to]

    def pin(self, to: str, count: int = 1) -> str:
        """The PIN of the `count`-th SMS to `to`, once the sandbox has it."""
        texts = wait_until(lambda: len(self.texts(to)) >= count and self.texts(to))
        found = re.search(r"\d{4,16}", texts[count - 1])
        assert found is not None, texts
        return found.group()


@pytest.fixture
def gateway(database_url: str) -> Iterator[Gateway]:
    clock = Clock()
    sent: list[OutboundMessage] = []
    services: list[NumberVerification] = []

    def install(app: Any, runtime: Runtime) -> None:
        service: NumberVerification = app.state.number_verification
        service.clock = clock
        services.append(service)
        sandbox = runtime.providers["sandbox"]
        original = sandbox.send

        async def recording(batch: Any) -> Any:
            sent.extend(batch)
            return await original(batch)

        setattr(sandbox, "send", recording)  # noqa: B010 (an instance attribute over the method)

    live = start_live_server(make_settings(database_url), install)
    yield Gateway(live, clock, services[0], sent)
    live.stop()


@pytest.fixture
def acme(gateway: Gateway) -> Account:
    return gateway.server.call(create_account(gateway.server.runtime, "acme"))


def api(gateway: Gateway, with_v1: bool = False) -> NumberVerificationApi:
    # The SDK sends these to api2.messente.com unless told to use the host (reference §5.1).
    host = gateway.server.base_url + ("/v1" if with_v1 else "")
    return NumberVerificationApi(ApiClient(Configuration(host=host,
                                                         ignore_operation_servers=True)))


def _documented_answers(path: str) -> set[str]:
    """The answers the official spec lists for an operation's 200 (text/plain)."""
    document = yaml.safe_load((SPEC_DIR / "messente-openapi-2.1.0.yaml").read_text())
    schema = document["paths"][path]["post"]["responses"]["200"]["content"]["text/plain"][
        "schema"]
    assert schema["type"] == "string"
    listed = set(re.findall(r"^\s*- ([A-Z]+(?: \d+)?|\d+):", schema["description"], re.M))
    listed |= set(re.findall(r"^Syntax for successful response: ([A-Z]+)$",
                             schema["description"], re.M))
    return {f"ERROR {a}" if a.isdigit() else a for a in listed}


START_ANSWERS = _documented_answers("/verify/start") if SPEC_DIR.is_dir() else set()
PIN_ANSWERS = _documented_answers("/verify/pin") if SPEC_DIR.is_dir() else set()


def start(gateway: Gateway, account: Account, to: str = EE, password: str | None = None,
          **options: Any) -> str:
    """/verify/start through the SDK; the raw answer is checked against the spec too."""
    verifier = api(gateway)
    args = (account.api_username, account.api_password if password is None else password, to)
    raw = verifier.verify_number_without_preload_content(*args, **options)
    assert raw.status == 200 and raw.headers["content-type"].startswith("text/plain")
    text = raw.data.decode()
    assert text in START_ANSWERS or re.fullmatch(r"OK [0-9a-f-]{36}", text), text
    return text


def verification_id(answer: str) -> str:
    assert answer.startswith("OK "), answer
    return answer[3:]


def check(gateway: Gateway, account: Account, verification: str, pin: str,
          password: str | None = None, **hints: Any) -> str:
    raw = api(gateway).verify_pin_without_preload_content(
        account.api_username, account.api_password if password is None else password,
        verification, pin, **hints)
    assert raw.status == 200 and raw.headers["content-type"].startswith("text/plain")
    text = raw.data.decode()
    assert text in PIN_ANSWERS, text
    return text


def wrong(pin: str) -> str:
    return str((int(pin) + 1) % 10 ** len(pin)).zfill(len(pin))


def sends(gateway: Gateway, verification: str) -> list[str]:
    s = verification_sends.c
    query = select(s.omnimessage_id).where(s.verification_id == verification).order_by(s.seq)
    return gateway.server.call(gateway.server.runtime.db.read(
        lambda conn: list(conn.execute(query).scalars())))


# --- the happy path -----------------------------------------------------------------------------

def test_the_pin_arrives_in_the_template_and_verifies_once(gateway: Gateway,
                                                           acme: Account) -> None:
    set_prices(gateway.server)
    credit(gateway.server, acme, 100_000)  # 0.10; an EE SMS costs 0.04
    answer = start(gateway, acme, template="Your Acme code: <PIN>. Do not share it.",
                   pin_length="6", var_from="AcmeBank", max_tries="1",
                   ip="192.0.2.7", browser="Mozilla/5.0")
    verification = verification_id(answer)
    pin = gateway.pin(EE)
    assert gateway.texts(EE) == [f"Your Acme code: {pin}. Do not share it."]
    assert len(pin) == 6
    assert [m.sender for m in gateway.sent] == ["AcmeBank"]
    assert check(gateway, acme, verification, wrong(pin)) == "INVALID"
    assert check(gateway, acme, verification, pin) == "VERIFIED"
    assert check(gateway, acme, verification, pin) == "EXPIRED"  # a PIN is good once
    # An ordinary message: its status through the Messente API, charged like any other.
    (omnimessage_id,) = sends(gateway, verification)
    config = Configuration(host=gateway.server.base_url + "/v1")
    config.username, config.password = acme.api_username, acme.api_password
    report = DeliveryReportApi(ApiClient(config))
    statuses = wait_until(lambda: (r := report.retrieve_delivery_report(omnimessage_id))
                          .statuses and r.statuses[0].status is not None and r.statuses)
    assert (statuses[0].status.value, statuses[0].price_info.total_price) == ("DELIVRD", "0.04")
    assert balance(gateway.server, acme) == "OK 0.06"


def test_defaults_and_a_form_body(gateway: Gateway, acme: Account) -> None:
    verification = verification_id(start(gateway, acme))
    pin = gateway.pin(EE)
    assert gateway.texts(EE) == [f"Your Verification PIN code is {pin}"] and len(pin) == 4
    assert gateway.sent[0].sender == acme.default_sender
    # the legacy parameters may come as a form body too, and under /v1
    answer = httpx.post(gateway.server.base_url + "/v1/verify/pin", data={
        "username": acme.api_username, "password": acme.api_password,
        "verification_id": verification, "pin": pin})
    assert (answer.status_code, answer.text) == (200, "VERIFIED")
    # under /v1 too, and a number with its country code but without the +
    assert api(gateway, with_v1=True).verify_number(acme.api_username, acme.api_password,
                                                    EE2[1:]).startswith("OK ")
    gateway.pin(EE2)


# --- the documented errors ----------------------------------------------------------------------

def test_every_documented_start_error(gateway: Gateway, acme: Account) -> None:
    assert start(gateway, acme, password="wrong") == "ERROR 101"
    assert api(gateway).verify_number("nobody", "x", EE) == "ERROR 101"
    assert start(gateway, acme, to="") == "ERROR 102"
    assert start(gateway, acme, to="+3725") == "ERROR 102"  # not a number
    assert start(gateway, acme, pin_length="3") == "ERROR 102"
    assert start(gateway, acme, pin_length="17") == "ERROR 102"
    assert start(gateway, acme, pin_length="four") == "ERROR 102"
    assert start(gateway, acme, validity="1801") == "ERROR 102"
    assert start(gateway, acme, max_tries="0") == "ERROR 102"
    assert start(gateway, acme, template="no placeholder here") == "ERROR 109"
    assert start(gateway, acme, var_from="A sender far too long") == "ERROR 111"
    assert start(gateway, acme, template="<PIN>" + "x" * 5000) == "ERROR 102"  # too many parts
    missing = httpx.post(gateway.server.base_url + "/verify/start",
                         params={"username": acme.api_username})
    assert (missing.status_code, missing.text) == (200, "ERROR 102")
    assert gateway.sent == [] and gateway.server.call(
        gateway.server.runtime.store.db.read(lambda conn: conn.execute(
            select(verification_sends.c.seq)).first())) is None  # nothing was stored


def test_every_documented_pin_error_and_account_isolation(gateway: Gateway,
                                                          acme: Account) -> None:
    other = gateway.server.call(create_account(gateway.server.runtime, "other"))
    verification = verification_id(start(gateway, acme))
    pin = gateway.pin(EE)
    assert check(gateway, acme, verification, pin, password="wrong") == "ERROR 101"
    assert check(gateway, acme, verification, "") == "ERROR 102"
    assert check(gateway, acme, str(uuid.uuid4()), pin) == "ERROR 110"
    assert check(gateway, acme, "not-an-id\x00", pin) == "ERROR 110"
    # another account cannot check (nor spend the tries of) this verification
    for _ in range(MAX_WRONG_PINS + 1):
        assert check(gateway, other, verification, wrong(pin)) == "ERROR 110"
    assert check(gateway, other, verification, pin) == "ERROR 110"
    assert check(gateway, acme, verification, pin) == "VERIFIED"


def test_an_expired_pin_is_expired(gateway: Gateway, acme: Account) -> None:
    verification = verification_id(start(gateway, acme, validity="60"))
    pin = gateway.pin(EE)
    gateway.clock.offset = dt.timedelta(seconds=59)
    assert check(gateway, acme, verification, wrong(pin)) == "INVALID"
    gateway.clock.offset = dt.timedelta(seconds=60)
    assert check(gateway, acme, verification, pin) == "EXPIRED"
    assert check(gateway, acme, verification, wrong(pin)) == "EXPIRED"


def test_retention_purges_verifications_a_month_after_they_expired(gateway: Gateway,
                                                                  acme: Account) -> None:
    short = verification_id(start(gateway, acme, validity="60", max_tries="1"))
    long = verification_id(start(gateway, acme, to="+37255512346", validity="1800",
                                 max_tries="1"))
    assert check(gateway, acme, short, wrong(gateway.pin(EE))) == "INVALID"  # a throttle row
    server = gateway.server
    retention = Retention(server.runtime.db, server.runtime.settings.retention)
    # 30 days and two minutes on: the first expired (at one minute) a month ago, the second
    # (at 30 minutes) not yet.
    later = utcnow() + REMEMBER_COOKIE + dt.timedelta(minutes=2)
    assert server.call(retention.purge(later)).verifications == 1
    assert sends(gateway, short) == [] and len(sends(gateway, long)) == 1
    assert stored_verifications(gateway, acme) == 1
    assert server.call(server.runtime.db.read(lambda conn: conn.execute(
        select(func.count()).select_from(verification_throttles)).scalar_one())) == 0
    assert check(gateway, acme, short, "0000") == "ERROR 110"  # gone: no such verification
    assert server.call(retention.purge(later)).verifications == 0


# --- brute force --------------------------------------------------------------------------------

def test_a_loop_over_every_4_digit_pin_never_verifies(gateway: Gateway, acme: Account) -> None:
    verification = verification_id(start(gateway, acme, pin_length="4", max_tries="3"))
    service = gateway.service
    params = {"verification_id": verification}
    # The attacker tries all 10,000 PINs. The order starts just past the real PIN (read from the
    # sandbox) so that it comes last: the case where a limit must hold. (Any order finds the PIN
    # within its first MAX_WRONG_PINS guesses with probability 3 in 10,000, by design.)
    first = int(gateway.pin(EE)) + 1
    guesses = [str((first + k) % 10_000).zfill(4) for k in range(10_000)]
    # The first guesses through the SDK, the rest straight to the service the route calls
    # (the same store and transaction, without 10,000 HTTP round trips).
    answers = [check(gateway, acme, verification, guess) for guess in guesses[:5]]
    assert answers == ["INVALID"] * MAX_WRONG_PINS + ["THROTTLED"] * (5 - MAX_WRONG_PINS)

    async def the_rest() -> list[str]:
        answers: list[str] = []
        for at in range(5, len(guesses), 50):  # 50 at a time, as a scripted attacker would
            answers += await asyncio.gather(*(service.check(acme, {**params, "pin": guess})
                                              for guess in guesses[at:at + 50]))
        return answers

    rest = gateway.server.call(the_rest(), timeout=300)
    assert set(rest) == {"THROTTLED"} and rest[-1] == "THROTTLED"  # the real PIN, last


def test_a_burst_of_concurrent_guesses_cannot_pass_the_limit(gateway: Gateway,
                                                             acme: Account) -> None:
    verification = verification_id(start(gateway, acme))
    pin = gateway.pin(EE)
    burst = [{"verification_id": verification, "pin": wrong(pin)}] * 16

    async def guess_at_once() -> list[str]:
        return list(await asyncio.gather(*(gateway.service.check(acme, p) for p in burst)))

    answers = gateway.server.call(guess_at_once())
    assert sorted(answers) == ["INVALID"] * MAX_WRONG_PINS + \
        ["THROTTLED"] * (len(burst) - MAX_WRONG_PINS)
    assert check(gateway, acme, verification, pin) == "THROTTLED"


def test_new_verifications_do_not_reset_a_destinations_throttle(gateway: Gateway,
                                                                acme: Account) -> None:
    other = gateway.server.call(create_account(gateway.server.runtime, "other"))
    spent = 0
    count = 0
    while spent < DESTINATION_WRONG_PINS:
        verification = verification_id(start(gateway, acme, max_tries="1"))
        count += 1
        pin = gateway.pin(EE, count)
        for _ in range(min(MAX_WRONG_PINS, DESTINATION_WRONG_PINS - spent)):
            assert check(gateway, acme, verification, wrong(pin)) == "INVALID"
            spent += 1
    fresh = verification_id(start(gateway, acme, max_tries="1"))
    assert check(gateway, acme, fresh, gateway.pin(EE, count + 1)) == "THROTTLED"
    # another destination, and the same destination in another account, are not throttled
    elsewhere = verification_id(start(gateway, acme, EE2))
    assert check(gateway, acme, elsewhere, gateway.pin(EE2)) == "VERIFIED"
    theirs = verification_id(start(gateway, other, max_tries="1"))
    assert check(gateway, other, theirs, gateway.pin(EE, count + 2)) == "VERIFIED"
    # the window passes
    gateway.clock.offset = dt.timedelta(hours=1, seconds=1)
    later = verification_id(start(gateway, acme, max_tries="1"))
    assert check(gateway, acme, later, gateway.pin(EE, count + 3)) == "VERIFIED"


# --- re-sends and cookies -----------------------------------------------------------------------

def test_the_same_pin_is_sent_again_after_retry_delay(gateway: Gateway, acme: Account) -> None:
    verification = verification_id(start(gateway, acme, max_tries="2", retry_delay="1"))
    first, second = gateway.pin(EE, 1), gateway.pin(EE, 2)
    assert first == second
    assert check(gateway, acme, verification, second) == "VERIFIED"


def test_verifying_cancels_the_scheduled_resends(gateway: Gateway, acme: Account) -> None:
    verification = verification_id(start(gateway, acme, max_tries="3", retry_delay="60"))
    assert check(gateway, acme, verification, gateway.pin(EE)) == "VERIFIED"
    store = gateway.server.runtime.store
    _first, *resends = sends(gateway, verification)
    assert len(resends) == 2
    for omnimessage_id in resends:
        view = gateway.server.call(store.omnimessage(acme.id, omnimessage_id))
        assert view is not None and view.state == "canceled"
    # out of tries cancels them too
    spent = verification_id(start(gateway, acme, EE2, max_tries="2", retry_delay="60"))
    pin = gateway.pin(EE2)
    for _ in range(MAX_WRONG_PINS):
        assert check(gateway, acme, spent, wrong(pin)) == "INVALID"
    (resend,) = sends(gateway, spent)[1:]
    view = gateway.server.call(store.omnimessage(acme.id, resend))
    assert view is not None and view.state == "canceled"


def test_a_verified_cookie_skips_the_pin(gateway: Gateway, acme: Account) -> None:
    other = gateway.server.call(create_account(gateway.server.runtime, "other"))
    verification = verification_id(start(gateway, acme, cookie="c-1", ip="192.0.2.7"))
    pin = gateway.pin(EE)
    assert start(gateway, acme, cookie="c-1").startswith("OK ")  # not verified yet
    gateway.pin(EE, 2)
    assert check(gateway, acme, verification, pin) == "VERIFIED"
    before = len(gateway.sent)
    assert start(gateway, acme, cookie="c-1", ip="192.0.2.7") == "VERIFIED"
    assert start(gateway, acme, cookie="c-1") == "VERIFIED"
    assert len(gateway.sent) == before  # nothing was sent for those
    assert start(gateway, acme, cookie="c-1", ip="198.51.100.1").startswith("OK ")  # elsewhere
    assert start(gateway, acme, cookie="c-2").startswith("OK ")
    assert start(gateway, acme, EE2, cookie="c-1").startswith("OK ")
    assert start(gateway, other, cookie="c-1").startswith("OK ")


def test_starts_are_held_to_the_accounts_rate_limit(gateway: Gateway) -> None:
    server = gateway.server
    server.call(create_account(server.runtime, "limited"))
    limited = server.call(ops.change_account(server.runtime, "limited",
                                             ops.AccountChanges(max_rps=2)))
    moment = [1_800_000_000 * SECOND_US]
    server.runtime.limits.clock = lambda: moment[0]
    # One start with a re-send is two messages: the whole budget of a second.
    first = verification_id(start(gateway, limited, max_tries="2"))
    assert start(gateway, limited, to="+37255512346") == "ERROR 209"
    assert len(sends(gateway, first)) == 2
    assert stored_verifications(gateway, limited) == 1  # the refused one stored nothing
    moment[0] += SECOND_US
    verification_id(start(gateway, limited, to="+37255512346", max_tries="1"))
    assert stored_verifications(gateway, limited) == 2


def stored_verifications(gateway: Gateway, account: Account) -> int:
    v = verifications.c
    query = select(func.count()).select_from(verifications).where(v.account_id == account.id)
    return int(gateway.server.call(gateway.server.runtime.db.read(
        lambda conn: conn.execute(query).scalar_one())))


def test_a_locked_database_answers_error_209_and_sends_nothing(tmp_path: Any) -> None:
    """SQLite's write lock held by another connection past database_timeout: the store is
    unavailable for writes (reads still pass, so the credentials are checked)."""
    path = tmp_path / "locked.db"
    live = start_live_server(make_settings(f"sqlite:///{path}", database_timeout=0.5))
    try:
        account = live.call(create_account(live.runtime, "acme"))
        verifier = NumberVerificationApi(ApiClient(Configuration(
            host=live.base_url, ignore_operation_servers=True)))
        verification = verification_id(verifier.verify_number(
            account.api_username, account.api_password, EE, max_tries="1"))
        locker = sqlite3.connect(path, isolation_level=None, timeout=5)
        try:
            locker.execute("BEGIN IMMEDIATE")
            assert verifier.verify_number(account.api_username, account.api_password,
                                          EE2) == "ERROR 209"
            assert verifier.verify_pin(account.api_username, account.api_password,
                                       verification, "0000") == "ERROR 209"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert live.call(live.runtime.store.db.read(lambda conn: conn.execute(
            select(func.count()).select_from(verification_sends)).scalar_one())) == 1
    finally:
        live.stop()
