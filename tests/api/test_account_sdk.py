"""Statistics, balance and pricing through the official `messente-api` SDK, on SQLite and
PostgreSQL: every operation's success and documented errors, bodies checked against the spec,
charging at submit (also under two gateways charging one balance at once), and the prices in
status answers, delivery reports and Twilio resources."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from messente_api import (
    SMS,
    AccountBalanceApi,
    ApiClient,
    ApiException,
    BulkMessagingApi,
    BulkOmnimessage,
    Configuration,
    DeliveryReportApi,
    Omnimessage,
    OmnimessageApi,
    OmnimessageMessagesInner,
    PricingApi,
    StatisticsApi,
    StatisticsReportSettings,
    Viber,
)
from twilio.rest import Client

from omnirelay.core.pricing import parse_csv
from omnirelay.core.timefmt import utcnow
from omnirelay.store.pricing import Pricing
from omnirelay.store.queries import Account
from tests.spec import assert_matches
from tests.support import (
    LiveServer,
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

EE, FI = "+37255512345", "+358401234567"
PRICES = ("Country,Code,MCCMNC,Network,Price,Channel\n"
          "Estonia,EE,24801,Telia,0.04,sms\n"
          "Estonia,EE,24802,Elisa,0.03,sms\n"
          "Finland,FI,,,0.05,sms\n"
          "Estonia,EE,,,0.01,viber\n")
TODAY = dt.datetime.now(dt.UTC).date()


def sdk(server: LiveServer, account: Account, password: str | None = None) -> ApiClient:
    config = Configuration(host=server.base_url + "/v1")
    config.username = account.api_username
    config.password = account.api_password if password is None else password
    return ApiClient(config)


def legacy(server: LiveServer, with_v1: bool = False) -> ApiClient:
    # The SDK sends these to api2.messente.com unless told to use the host (reference §5.1).
    return ApiClient(Configuration(host=server.base_url + ("/v1" if with_v1 else ""),
                                   ignore_operation_servers=True))


def set_prices(server: LiveServer, csv_text: str = PRICES, account: Account | None = None) -> None:
    rows = parse_csv(csv_text)
    server.call(Pricing(server.runtime.store.db).replace_prices(
        None if account is None else account.id, rows, ["sms"]))


def credit(server: LiveServer, account: Account, amount: int) -> None:
    assert server.call(Pricing(server.runtime.store.db).credit(account.id, amount, utcnow())) \
        is not None


def balance(server: LiveServer, account: Account) -> str:
    return AccountBalanceApi(legacy(server)).get_account_balance(account.api_username,
                                                                 account.api_password)


def send(server: LiveServer, account: Account, to: str = EE, text: str = "hello",
         viber_first: bool = False) -> str:
    messages = [OmnimessageMessagesInner(SMS(text=text))]
    if viber_first:
        messages.insert(0, OmnimessageMessagesInner(Viber(text=text, sender="V")))
    sent = OmnimessageApi(sdk(server, account)).send_omnimessage(
        Omnimessage(to=to, messages=messages))
    return str(sent.omnimessage_id)


def final(server: LiveServer, account: Account, omnimessage_id: str,
          last: str = "sms") -> list[Any]:
    """The statuses once the attempt on `last` has ended."""
    api = DeliveryReportApi(sdk(server, account))

    def done() -> list[Any] | None:
        report = api.retrieve_delivery_report(omnimessage_id)
        statuses = report.statuses
        ended = [s for s in statuses if s.status is not None and s.status.value in
                 {"DELIVRD", "UNDELIV", "FAILED", "REJECTD", "EXPIRED"}]
        if ended and ended[-1].channel.value == last:
            raw = api.retrieve_delivery_report_without_preload_content(omnimessage_id)
            assert_matches(json.loads(raw.data), "DeliveryReportResponse")
            return statuses
        return None

    return wait_until(done)  # type: ignore[no-any-return]


def report(server: LiveServer, account: Account, **kwargs: Any) -> dict[str, tuple[int, str]]:
    settings = StatisticsReportSettings(start_date=kwargs.pop("start", TODAY),
                                        end_date=kwargs.pop("end", TODAY), **kwargs)
    answer = StatisticsApi(sdk(server, account)).create_statistics_report(settings)
    assert_matches(json.loads(answer.to_json()), "StatisticsReportSuccess")
    return {r.country: (r.total_messages, r.total_price) for r in answer.reports}


def statistics_error(server: LiveServer, account: Account, body: Any, status: int,
                     code: str, password: str | None = None) -> dict[str, Any]:
    """Through the SDK where it can send the body, else as raw JSON over HTTP."""
    if isinstance(body, StatisticsReportSettings):
        with pytest.raises(ApiException) as caught:
            StatisticsApi(sdk(server, account, password)).create_statistics_report(body)
        assert caught.value.status == status
        answer = json.loads(caught.value.body)
    else:
        raw = httpx.post(server.base_url + "/v1/statistics/reports", content=body,
                         headers={"Content-Type": "application/json"},
                         auth=(account.api_username, account.api_password))
        assert raw.status_code == status
        answer = raw.json()
    assert_matches(answer, "ErrorStatistics")
    assert [e["code"] for e in answer["errors"]] == [code]
    return answer


# --- statistics --------------------------------------------------------------------------------

def test_statistics_report_counts_and_sums_per_country(server: LiveServer,
                                                       account: Account) -> None:
    set_prices(server)
    other = server.call(create_account(server.runtime, "other"))
    for to in (EE, EE, FI):
        final(server, account, send(server, account, to))
    final(server, other, send(server, other, FI))
    assert report(server, account) == {"Estonia": (2, "0.08"), "Finland": (1, "0.05")}
    assert report(server, account, message_types=["sms"]) == \
        {"Estonia": (2, "0.08"), "Finland": (1, "0.05")}
    assert report(server, account, message_types=["viber", "hlr"]) == {}
    assert report(server, other) == {"Finland": (1, "0.05")}  # each account its own
    yesterday = TODAY - dt.timedelta(days=1)
    assert report(server, account, start=yesterday, end=yesterday) == {}


def test_statistics_errors_are_in_the_statistics_shape(server: LiveServer,
                                                       account: Account) -> None:
    ok = StatisticsReportSettings(start_date=TODAY, end_date=TODAY)
    statistics_error(server, account, ok, 401, "103", password="wrong")
    later = StatisticsReportSettings(start_date=TODAY, end_date=TODAY - dt.timedelta(days=1))
    assert "after" in statistics_error(server, account, later, 422, "104")["errors"][0]["details"]
    typed = StatisticsReportSettings(start_date=TODAY, end_date=TODAY, message_types=["fax"])
    statistics_error(server, account, typed, 422, "104")
    statistics_error(server, account, b'{"start_date": "2026-13-01", "end_date": "2026-12-01"}',
                     422, "104")
    statistics_error(server, account, b'{"end_date": "2026-12-01"}', 422, "104")
    statistics_error(server, account, b'["not", "an", "object"]', 422, "104")
    statistics_error(server, account, b"{not json", 400, "100")
    # Answered outside the handler (the router's 405) and still in the statistics shape.
    wrong_method = httpx.get(server.base_url + "/v1/statistics/reports",
                             auth=(account.api_username, account.api_password))
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert_matches(wrong_method.json(), "ErrorStatistics")
    assert [e["code"] for e in wrong_method.json()["errors"]] == ["100"]


# --- balance and pricing -----------------------------------------------------------------------

def test_get_balance_is_unlimited_until_credited(server: LiveServer, account: Account) -> None:
    assert balance(server, account) == "OK unlimited"
    credit(server, account, 10_230_000)
    assert balance(server, account) == "OK 10.23"
    via_post = AccountBalanceApi(legacy(server, with_v1=True)).get_account_balance_using_post(
        account.api_username, account.api_password)
    assert via_post == "OK 10.23"
    other = server.call(create_account(server.runtime, "other"))
    assert balance(server, other) == "OK unlimited"


def test_legacy_credential_errors(server: LiveServer, account: Account) -> None:
    api = AccountBalanceApi(legacy(server))
    assert api.get_account_balance(account.api_username, "wrong") == "ERROR 101"
    assert api.get_account_balance("nobody", account.api_password) == "ERROR 101"
    assert PricingApi(legacy(server)).get_pricelist(account.api_username, "wrong") == "ERROR 101"
    missing = httpx.get(server.base_url + "/get_balance",
                        params={"username": account.api_username})
    assert (missing.status_code, missing.text) == (200, "ERROR 102")
    raw = PricingApi(legacy(server)).get_prices_without_preload_content(
        account.api_username, "wrong", "EE")
    assert (raw.status, raw.data) == (200, b"ERROR 101")


def test_pricelist_is_the_accounts_csv(server: LiveServer, account: Account) -> None:
    set_prices(server)
    set_prices(server, "Country,Code,MCCMNC,Network,Price\nFinland,FI,24491,DNA,0.02\n", account)
    other = server.call(create_account(server.runtime, "other"))
    own = PricingApi(legacy(server)).get_pricelist(account.api_username, account.api_password)
    assert own.splitlines() == ["Country,Code,MCCMNC,Network,Price",
                                "Estonia,EE,24801,Telia,0.04", "Estonia,EE,24802,Elisa,0.03",
                                "Finland,FI,24491,DNA,0.02"]
    theirs = PricingApi(legacy(server)).get_pricelist(other.api_username, other.api_password)
    assert theirs.splitlines()[1:] == ["Estonia,EE,24801,Telia,0.04",
                                       "Estonia,EE,24802,Elisa,0.03", "Finland,FI,,,0.05"]


def test_prices_of_a_country_and_its_errors(server: LiveServer, account: Account) -> None:
    set_prices(server)
    api = PricingApi(legacy(server))
    price = api.get_prices(account.api_username, account.api_password, "ee")
    assert_matches(json.loads(price.to_json()), "Price")
    assert (price.country, price.name, price.prefix) == ("EE", "Estonia", "372")
    assert [(n.name, n.price, n.mccmnc) for n in price.networks] == \
        [("Telia", "0.04", 24801), ("Elisa", "0.03", 24802)]
    xml = api.get_prices_without_preload_content(account.api_username, account.api_password,
                                                 "FI", "xml")
    assert b"<prefix>358</prefix>" in xml.data and b"<price>0.05</price>" in xml.data

    def error(country: str, answer_format: str | None = None) -> bytes:
        raw = api.get_prices_without_preload_content(account.api_username,
                                                     account.api_password, country,
                                                     answer_format)
        assert raw.status == 200
        return bytes(raw.data)

    assert error("XX") == b"ERROR 104"  # no such country
    assert error("LV") == b"ERROR 105"  # a country without prices
    assert error("EE", "yaml") == b"ERROR 106"


# --- charging ----------------------------------------------------------------------------------

def test_each_part_is_charged_at_submit_and_reported(server: LiveServer, account: Account,
                                                     receiver: WebhookReceiver) -> None:
    set_prices(server)
    server.call(server.runtime.store.update_account(account.id, dlr_url=receiver.url + "/dlr"))
    credit(server, account, 100_000)  # 0.10
    (single,) = final(server, account, send(server, account))
    assert (single.status.value, single.price_info.part_price, single.price_info.parts_count,
            single.price_info.total_price) == ("DELIVRD", "0.04", 1, "0.04")
    (double,) = final(server, account, send(server, account, text="x" * 200))  # two parts
    assert (double.status.value, double.err.value, double.price_info.total_price) == \
        ("FAILED", 4, "0")
    assert balance(server, account) == "OK 0.06"  # 0.08 was not covered: nothing taken
    (third,) = final(server, account, send(server, account))
    assert third.status.value == "DELIVRD"
    assert balance(server, account) == "OK 0.02"
    reports = [r.json() for r in receiver.wait_for(3)]
    assert sorted((r["err"], r["price_info"]["part_price"], r["price_info"]["total_price"])
                  for r in reports) == [(0, "0.04", "0.04"), (0, "0.04", "0.04"), (4, "0", "0")]


def test_a_long_sms_pays_for_each_part(server: LiveServer, account: Account) -> None:
    set_prices(server)
    (double,) = final(server, account, send(server, account, text="x" * 200))
    assert (double.status.value, double.price_info.part_price, double.price_info.parts_count,
            double.price_info.total_price) == ("DELIVRD", "0.04", 2, "0.08")
    assert balance(server, account) == "OK unlimited"
    assert report(server, account) == {"Estonia": (1, "0.08")}


def test_refused_at_submit_is_refunded_and_fallback_is_charged(server: LiveServer,
                                                                account: Account) -> None:
    set_prices(server)
    credit(server, account, 50_000)
    statuses = final(server, account, send(server, account, to="+37255519992"))
    assert [(s.status.value, s.price_info.total_price) for s in statuses] == \
        [("REJECTD", "0")]
    assert balance(server, account) == "OK 0.05"  # the upstream refused it: nothing paid
    statuses = final(server, account, send(server, account, viber_first=True), last="viber")
    assert [(s.channel.value, s.status.value, s.price_info.total_price) for s in statuses] == \
        [("viber", "DELIVRD", "0.01")]  # Viber's own price, not the SMS one
    assert balance(server, account) == "OK 0.04"


def test_bulk_sends_one_balance_and_never_overdraws(server: LiveServer, account: Account) -> None:
    set_prices(server)
    credit(server, account, 200_000)  # five messages at 0.04
    bulk = BulkMessagingApi(sdk(server, account)).send_bulk_omnimessage(BulkOmnimessage(
        messages=[Omnimessage(to=EE, messages=[OmnimessageMessagesInner(SMS(text=f"n{i}"))])
                  for i in range(8)]))
    ids = [m.actual_instance.omnimessage_id for m in bulk.messages]
    outcomes = sorted((final(server, account, i)[0].err.value) for i in ids)
    assert outcomes == [0] * 5 + [4] * 3
    assert balance(server, account) == "OK 0.00"


@pytest.fixture
def second_server(database_url: str, server: LiveServer) -> Iterator[LiveServer]:
    live = start_live_server(make_settings(database_url, engine={"batch_size": 1}))
    yield live
    live.stop()


def test_two_gateways_charging_one_balance_never_overdraw(server: LiveServer,
                                                          second_server: LiveServer,
                                                          account: Account) -> None:
    """Two processes' dispatchers claim from one queue and charge one balance at once: exactly
    the messages the balance covers are sent, and it ends at zero, not below."""
    set_prices(server)
    credit(server, account, 240_000)  # six messages at 0.04
    api_a = BulkMessagingApi(sdk(server, account))
    api_b = BulkMessagingApi(sdk(second_server, account))
    ids: list[str] = []
    for api in (api_a, api_b, api_a, api_b):
        bulk = api.send_bulk_omnimessage(BulkOmnimessage(messages=[
            Omnimessage(to=EE, messages=[OmnimessageMessagesInner(SMS(text=f"m{i}"))])
            for i in range(5)]))
        ids.extend(m.actual_instance.omnimessage_id for m in bulk.messages)
    outcomes = sorted(final(server, account, i)[0].err.value for i in ids)
    assert outcomes == [0] * 6 + [4] * 14
    assert balance(server, account) == "OK 0.00"
    assert report(server, account) == {"Estonia": (6, "0.24")}


def test_twilio_resources_carry_the_price(server: LiveServer, account: Account) -> None:
    set_prices(server)
    client = Client(account.twilio_account_sid, account.twilio_auth_token, environment={})
    client.api.base_url = server.base_url
    created = client.messages.create(to=EE, from_="+37255500000", body="hello")
    assert (created.price, created.price_unit) == (None, "EUR")

    def priced() -> Any:
        fetched = client.messages(created.sid).fetch()
        return fetched if fetched.status == "delivered" else None

    fetched = wait_until(priced)
    assert (fetched.price, fetched.price_unit) == ("-0.04", "EUR")

    credit(server, account, 30_000)  # less than one message
    refused = client.messages.create(to=EE, from_="+37255500000", body="hello")

    def failed() -> Any:
        fetched = client.messages(refused.sid).fetch()
        return fetched if fetched.status == "failed" else None

    fetched = wait_until(failed)
    assert (fetched.error_code, fetched.price, fetched.price_unit) == (30002, None, "EUR")
    assert balance(server, account) == "OK 0.03"
