"""Number lookup (POST /hlr/sync) through the official SDK's NumberLookupApi: the offline, sandbox
and http providers, every documented error, charging from the `hlr` price list and the statistics
that count the lookups, account by account. Bodies are checked against Messente's spec. The http
provider is tested against a fake HLR service on 127.0.0.1 that checks what it is sent."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from messente_api import (
    ApiClient,
    ApiException,
    Configuration,
    NumberLookupApi,
    NumbersToInvestigate,
    StatisticsApi,
    StatisticsReportSettings,
)
from sqlalchemy import Connection, select

from omnirelay.core.pricing import parse_csv
from omnirelay.core.timefmt import utcnow
from omnirelay.store.pricing import Pricing
from omnirelay.store.queries import Account
from omnirelay.store.tables import number_lookups
from tests.spec import assert_matches
from tests.support import LiveServer, create_account, make_settings, start_live_server

EE, EE2, FI = "+37251234567", "+37255512345", "+358401234567"
TODAY = dt.datetime.now(dt.UTC).date()
HLR_TOKEN = "hlr-test-token"


def sdk(server: LiveServer, account: Account, password: str | None = None,
        v1: bool = True) -> NumberLookupApi:
    config = Configuration(host=server.base_url + ("/v1" if v1 else ""))
    config.username = account.api_username
    config.password = account.api_password if password is None else password
    return NumberLookupApi(ApiClient(config))


def lookup(server: LiveServer, account: Account, *numbers: str, v1: bool = True) -> dict[str, Any]:
    """The raw answer, checked against the spec and parsed by the SDK as well."""
    answer = sdk(server, account, v1=v1).fetch_info_with_http_info(
        NumbersToInvestigate(numbers=list(numbers)))
    assert answer.status_code == 200
    body: dict[str, Any] = json.loads(answer.raw_data)
    assert_matches(body, "SyncNumberLookupSuccess")
    assert [r.number for r in answer.data.result] == [r["number"] for r in body["result"]]
    return body


def refused(server: LiveServer, account: Account, numbers: Any, status: int, code: int,
            password: str | None = None) -> str:
    """An error through the SDK (model_construct sends what its own checks would stop)."""
    body = NumbersToInvestigate.model_construct(numbers=numbers)
    with pytest.raises(ApiException) as caught:
        sdk(server, account, password).fetch_info(body)
    assert caught.value.status == status
    answer = json.loads(caught.value.body)
    assert_matches(answer, "ErrorNumberLookup")
    assert [e["error"]["code"] for e in answer["errors"]] == [code]
    return str(answer["errors"][0]["error"]["description"])


def set_prices(server: LiveServer, csv_text: str, account: Account | None = None) -> None:
    server.call(Pricing(server.runtime.store.db).replace_prices(
        None if account is None else account.id, parse_csv(csv_text, "hlr"), ["hlr"]))


def credit(server: LiveServer, account: Account, amount: int) -> None:
    assert server.call(Pricing(server.runtime.store.db).credit(account.id, amount, utcnow())) \
        is not None


def balance(server: LiveServer, account: Account) -> int | None:
    return server.call(Pricing(server.runtime.store.db).balance(account.id))


def recorded(server: LiveServer, account: Account) -> list[tuple[str, str | None, int]]:
    def work(conn: Connection) -> list[tuple[str, str | None, int]]:
        rows = conn.execute(select(number_lookups.c.number, number_lookups.c.country,
                                   number_lookups.c.price_micros)
                            .where(number_lookups.c.account_id == account.id)
                            .order_by(number_lookups.c.id))
        return [(r[0], r[1], int(r[2])) for r in rows]

    return server.call(server.runtime.store.db.read(work))


def report(server: LiveServer, account: Account, types: list[str] | None = None
           ) -> dict[str, tuple[int, str]]:
    config = Configuration(host=server.base_url + "/v1")
    config.username, config.password = account.api_username, account.api_password
    answer = StatisticsApi(ApiClient(config)).create_statistics_report(
        StatisticsReportSettings(start_date=TODAY, end_date=TODAY, message_types=types))
    return {r.country: (r.total_messages, r.total_price) for r in answer.reports}


# --- offline (the default), on SQLite and PostgreSQL --------------------------------------------

def test_offline_answers_what_the_metadata_knows(server: LiveServer, account: Account) -> None:
    body = lookup(server, account, EE, "+372 5551 2345", "+1234")
    first, second, invalid = body["result"]
    assert first["number"] == EE and second["number"] == EE2
    assert first["status"] == "UNKNOWN" and first["numberType"] == "mobile"
    assert first["originalNetwork"] == {"networkName": "Telia Eesti AS", "countryName": "Estonia",
                                        "countryPrefix": "372", "countryCode": "EST"}
    assert [first[f] for f in ("roaming", "ported", "currentNetwork", "roamingNetwork",
                               "portedNetwork")] == [None] * 5
    assert invalid["status"] == "INVALID"
    assert len(body["request_id"]) == 36
    # Also at /, where an SDK configured without /v1 sends it.
    assert lookup(server, account, EE, v1=False)["result"][0]["status"] == "UNKNOWN"
    assert len(recorded(server, account)) == 4  # each number is a lookup


def test_each_documented_error_stores_and_charges_nothing(server: LiveServer,
                                                          account: Account) -> None:
    set_prices(server, "Country,Code,MCCMNC,Network,Price\nEstonia,EE,,,0.01\n")
    credit(server, account, 15_000)
    assert refused(server, account, [EE], 401, 101, password="wrong") == \
        "Wrong username or password"
    assert "not 11" in refused(server, account, [EE] * 11, 400, 102)
    assert "not 0" in refused(server, account, [], 400, 102)
    assert refused(server, account, [EE, "call me"], 400, 102).startswith("numbers[1] is not")
    assert refused(server, account, [EE, EE], 402, 104) == \
        "the balance does not cover 2 lookups (0.02 EUR); nothing was charged"
    raw = httpx.post(server.base_url + "/v1/hlr/sync", content=b"{numbers",
                     headers={"Content-Type": "application/json"},
                     auth=(account.api_username, account.api_password))
    assert raw.status_code == 400 and raw.json()["errors"][0]["error"]["code"] == 106
    assert_matches(raw.json(), "ErrorNumberLookup")
    wrong_method = httpx.get(server.base_url + "/v1/hlr/sync")
    assert wrong_method.status_code == 405
    assert_matches(wrong_method.json(), "ErrorNumberLookup")
    assert recorded(server, account) == []
    assert balance(server, account) == 15_000
    lookup(server, account, EE)  # what it covers goes through
    assert balance(server, account) == 5_000


def test_lookups_are_charged_and_counted_for_their_own_account(server: LiveServer,
                                                               account: Account) -> None:
    other = server.call(create_account(server.runtime, "other"))
    set_prices(server, "Country,Code,MCCMNC,Network,Price\nEstonia,EE,,,0.01\n")
    set_prices(server, "Country,Code,MCCMNC,Network,Price\nEstonia,EE,,,0.02\n", other)
    credit(server, account, 30_000)
    lookup(server, account, EE, EE2)
    lookup(server, other, EE, FI)  # other is unlimited; Finland has no hlr price
    assert balance(server, account) == 10_000 and balance(server, other) is None
    assert recorded(server, account) == [(EE, "EE", 10_000), (EE2, "EE", 10_000)]
    assert recorded(server, other) == [(EE, "EE", 20_000), (FI, "FI", 0)]
    assert report(server, account, ["hlr"]) == {"Estonia": (2, "0.02")}
    assert report(server, account) == {"Estonia": (2, "0.02")}
    assert report(server, account, ["sms"]) == {}
    assert report(server, other, ["hlr", "sms"]) == {"Estonia": (1, "0.02"),
                                                     "Finland": (1, "0.00")}
    refused(server, account, [EE, EE], 402, 104)  # 0.02 > 0.01: all or nothing
    assert balance(server, account) == 10_000 and len(recorded(server, account)) == 2
    lookup(server, account, EE)
    assert balance(server, account) == 0
    assert report(server, account, ["hlr"]) == {"Estonia": (3, "0.03")}
    assert report(server, other, ["hlr"]) == {"Estonia": (1, "0.02"), "Finland": (1, "0.00")}


# --- sandbox -------------------------------------------------------------------------------------

@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_live_server(make_settings(f"sqlite:///{tmp_path}/omnirelay.db",
                                           lookup={"provider": "sandbox"}))
    yield live
    live.stop()


def test_sandbox_gives_deterministic_live_answers(sandbox: LiveServer) -> None:
    account = sandbox.call(create_account(sandbox.runtime))
    numbers = ["+37255512345", "+37255519970", "+37255519971", "+37255519972", "+37255519973",
               "+1234"]
    results = lookup(sandbox, account, *numbers)["result"]
    assert [(r["status"], r["roaming"], r["ported"]) for r in results] == [
        ("true", False, False), ("false", False, False), ("true", True, False),
        ("true", False, True), ("UNKNOWN", None, None), ("INVALID", None, None)]
    assert results[0]["currentNetwork"] == results[0]["originalNetwork"]
    assert results[2]["roamingNetwork"]["networkName"] == "Sandbox Roaming"
    assert results[3]["portedNetwork"]["mccmnc"] == "00102"
    parsed = sdk(sandbox, account).fetch_info(NumbersToInvestigate(numbers=numbers[2:4]))
    assert parsed.result[0].roaming_network.country_code == "FIN"
    assert parsed.result[1].ported_network.network_name == "Sandbox Ported"


# --- http, against a fake HLR service ------------------------------------------------------------

class FakeHlr:
    """An HLR service on 127.0.0.1 that answers /v1/hlr/sync for the right token only."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None, Any]] = []
        self.mode = "ok"
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                fake.requests.append((self.path, self.headers.get("Authorization"), body))
                if self.path != "/v1/hlr/sync" or \
                        self.headers.get("Authorization") != f"Bearer {HLR_TOKEN}":
                    self._answer(401, b'{"errors": []}')
                elif fake.mode == "slow":
                    fake.release.wait(10)
                    self._answer(200, b"{}")
                elif fake.mode == "error":
                    self._answer(500, b"oops")
                elif fake.mode == "garbage":
                    self._answer(200, b'{"result": "no"}')
                else:
                    self._answer(200, json.dumps({"request_id": "x", "result": [
                        {"number": n, "status": "ON", "roaming": False, "ported": True,
                         "currentNetwork": {"mccmnc": "24802", "networkName": "Elisa",
                                            "countryName": "Estonia", "countryPrefix": "372",
                                            "countryCode": "EST"},
                         "originalNetwork": {"mccmnc": "24801", "networkName": "Telia"},
                         "portedNetwork": {"mccmnc": "24802", "networkName": "Elisa"},
                         "roamingNetwork": None, "error": None}
                        for n in body["numbers"]]}).encode())

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/hlr/sync"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hlr() -> Iterator[FakeHlr]:
    fake = FakeHlr()
    yield fake
    fake.stop()


def http_gateway(tmp_path: Path, url: str, token: str = HLR_TOKEN) -> LiveServer:
    return start_live_server(make_settings(
        f"sqlite:///{tmp_path}/omnirelay.db",
        lookup={"provider": "http", "url": url, "token": token, "timeout": 0.5}))


def test_http_provider_asks_the_service_and_keeps_to_the_spec(tmp_path: Path,
                                                              hlr: FakeHlr) -> None:
    gateway = http_gateway(tmp_path, hlr.url)
    try:
        account = gateway.call(create_account(gateway.runtime))
        results = lookup(gateway, account, EE, "+372 5551 2345")["result"]
        assert hlr.requests == [("/v1/hlr/sync", f"Bearer {HLR_TOKEN}",
                                 {"numbers": [EE, EE2]})]
        assert results[0]["status"] == "true" and results[0]["ported"] is True
        assert results[0]["currentNetwork"]["mccmnc"] == "24802"
        assert results[0]["originalNetwork"] == {"mccmnc": "24801", "networkName": "Telia"}
        assert results[0]["numberType"] == "mobile"  # offline fields stay
        assert len(recorded(gateway, account)) == 2
    finally:
        gateway.stop()


@pytest.mark.parametrize(("mode", "token", "status", "says"), [
    ("error", HLR_TOKEN, 502, "answered HTTP 500"),
    ("ok", "wrong-token", 502, "answered HTTP 401"),
    ("garbage", HLR_TOKEN, 502, "answer was not usable"),
    ("slow", HLR_TOKEN, 504, "did not answer within 0.5 s"),
])
def test_http_provider_failures_are_server_errors_and_refunded(
        tmp_path: Path, hlr: FakeHlr, mode: str, token: str, status: int, says: str) -> None:
    hlr.mode = mode
    gateway = http_gateway(tmp_path, hlr.url, token)
    try:
        account = gateway.call(create_account(gateway.runtime))
        set_prices(gateway, "Country,Code,MCCMNC,Network,Price\nEstonia,EE,,,0.01\n")
        credit(gateway, account, 10_000)
        description = refused(gateway, account, [EE], status, 103)
        assert says in description and "nothing was charged" in description
        assert len(hlr.requests) == 1
        assert recorded(gateway, account) == [] and balance(gateway, account) == 10_000
    finally:
        hlr.release.set()
        gateway.stop()


def test_an_unreachable_service_is_a_server_error(tmp_path: Path) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}/hlr/sync"
    gateway = http_gateway(tmp_path, url)  # nothing listens there any more
    try:
        account = gateway.call(create_account(gateway.runtime))
        assert "cannot be reached" in refused(gateway, account, [EE], 502, 103)
        assert recorded(gateway, account) == []
    finally:
        gateway.stop()

