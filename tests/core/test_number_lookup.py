"""Number lookup without a network: the request's numbers, the offline and sandbox answers, what an
HLR service's answer is kept to, and the [lookup] configuration. Every answer is checked against
Messente's SyncNumberLookupResult schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omnirelay.config import load_settings
from omnirelay.core.number_lookup import (
    LookupRequestError,
    UpstreamAnswerError,
    lookup_number,
    offline_result,
    parse_request,
    upstream_result,
)
from omnirelay.core.pricing import parse_csv
from omnirelay.errors import ConfigError
from omnirelay.lookups import build
from omnirelay.lookups.http import HttpLookup, parse_answer
from omnirelay.lookups.offline import OfflineLookup
from omnirelay.lookups.sandbox import SandboxLookup, sandbox_result
from tests.spec import assert_matches

ESTONIA = {"countryName": "Estonia", "countryPrefix": "372", "countryCode": "EST"}


def checked(result: dict[str, Any]) -> dict[str, Any]:
    assert_matches(result, "SyncNumberLookupResult")
    return result


def test_numbers_are_normalised_to_e164_and_kept_in_order() -> None:
    numbers = parse_request({"numbers": ["+372 5123 4567", "37251234567", "+37251234567",
                                         "+1234"]})
    assert [n.number for n in numbers] == ["+37251234567"] * 3 + ["+1234"]
    assert [(n.region, n.valid) for n in numbers] == [("EE", True)] * 3 + [("", False)]


@pytest.mark.parametrize(("body", "message"), [
    ([], "the body must be a JSON object"),
    ({}, "numbers is required"),
    ({"numbers": "+37251234567"}, "numbers must be an array"),
    ({"numbers": []}, "numbers must hold 1 to 10 phone numbers, not 0"),
    ({"numbers": ["+37251234567"] * 11}, "numbers must hold 1 to 10 phone numbers, not 11"),
    ({"numbers": ["+37251234567", 37251234567]}, "numbers[1] must be a phone number as a string"),
    ({"numbers": ["abc"]}, "numbers[0] is not a phone number"),
    ({"numbers": [""]}, "numbers[0] is not a phone number"),
    ({"numbers": ["+"]}, "numbers[0] is not a phone number"),
    ({"numbers": ["+3725123456\u0667"]}, "numbers[0] is not a phone number"),  # Arabic-Indic 7
    ({"numbers": ["+" + "1" * 40]}, "numbers[0] is not a phone number"),
])
def test_what_is_not_a_request_of_phone_numbers_is_refused(body: Any, message: str) -> None:
    with pytest.raises(LookupRequestError) as caught:
        parse_request(body)
    assert caught.value.detail.startswith(message), caught.value.detail


def test_offline_knows_validity_country_carrier_and_type_not_the_live_fields() -> None:
    mobile = checked(offline_result(lookup_number("+37251234567")))
    assert mobile == {
        "number": "+37251234567", "status": "UNKNOWN", "error": None, "numberType": "mobile",
        "originalNetwork": {"networkName": "Telia Eesti AS", **ESTONIA},
        "roaming": None, "ported": None, "roamingNetwork": None, "currentNetwork": None,
        "portedNetwork": None}
    landline = checked(offline_result(lookup_number("+4930123456")))
    # libphonenumber names no carrier for a German landline: the country alone
    assert landline["originalNetwork"] == {"countryName": "Germany", "countryPrefix": "49",
                                           "countryCode": "DEU"}
    assert landline["numberType"] == "fixed_line"
    invalid = checked(offline_result(lookup_number("+1234")))
    assert (invalid["status"], invalid["originalNetwork"], invalid["numberType"]) == \
        ("INVALID", None, "unknown")


@pytest.mark.parametrize(("number", "status", "roaming", "ported"), [
    ("+37255512345", "true", False, False),
    ("+37255519970", "false", False, False),
    ("+37255519971", "true", True, False),
    ("+37255519972", "true", False, True),
    ("+37255519973", "UNKNOWN", None, None),
    ("+1234", "INVALID", None, None),
])
def test_sandbox_answers_by_the_last_digits(number: str, status: str, roaming: bool | None,
                                            ported: bool | None) -> None:
    result = checked(sandbox_result(lookup_number(number)))
    assert (result["status"], result["roaming"], result["ported"]) == (status, roaming, ported)
    if roaming:
        assert result["roamingNetwork"]["countryCode"] == "FIN"
        assert result["currentNetwork"] == result["originalNetwork"]
    if ported:
        assert result["portedNetwork"] == result["currentNetwork"] == {
            "mccmnc": "00102", "networkName": "Sandbox Ported", **ESTONIA}
        assert result["originalNetwork"]["networkName"] == "Tele 2"
    if status == "true" and not roaming and not ported:
        assert result["currentNetwork"] == result["originalNetwork"]


def test_sandbox_roaming_from_finland_is_in_sweden() -> None:
    result = sandbox_result(lookup_number("+358401239971"))
    assert result["roamingNetwork"]["countryCode"] == "SWE"


def test_an_upstream_answer_is_kept_to_the_spec() -> None:
    item = lookup_number("+37251234567")
    raw = {"number": "+37251234567", "status": "ON", "roaming": False, "ported": True,
           "currentNetwork": {"mccmnc": "24802", "networkName": "Elisa", "extra": 1,
                              "countryName": 5},
           "portedNetwork": {"mccmnc": "24802", "networkName": "Elisa"},
           "secret": "dropped", "error": ""}
    result = checked(upstream_result(item, raw, "result[0]"))
    assert result["status"] == "true"
    assert result["currentNetwork"] == {"mccmnc": "24802", "networkName": "Elisa"}
    assert result["originalNetwork"] == {"networkName": "Telia Eesti AS", **ESTONIA}  # offline
    assert "secret" not in result and result["error"] == ""
    for bad in ({"status": "MAYBE"}, {"roaming": "yes"}, {"currentNetwork": "Elisa"}, []):
        with pytest.raises(UpstreamAnswerError):
            upstream_result(item, bad, "result[0]")


def test_an_upstream_answer_must_have_one_result_per_number() -> None:
    items = [lookup_number("+37251234567")]
    for body in ({}, {"result": []}, {"result": [{}, {}]}, [1]):
        with pytest.raises(UpstreamAnswerError):
            parse_answer(items, body)
    assert parse_answer(items, {"result": [{}]})[0]["status"] == "UNKNOWN"


def _settings(tmp_path: Path, text: str) -> Any:
    config = tmp_path / "relay.toml"
    config.write_text(text)
    return load_settings(config, environ={})


def test_lookup_configuration_picks_the_provider(tmp_path: Path) -> None:
    assert isinstance(build(_settings(tmp_path, "").lookup), OfflineLookup)
    assert isinstance(build(_settings(tmp_path, '[lookup]\nprovider = "sandbox"\n').lookup),
                      SandboxLookup)
    http = build(_settings(tmp_path, '[lookup]\nprovider = "http"\nurl = "https://hlr.example/'
                                     'v1/hlr/sync"\ntoken = "t0k"\ntimeout = 3\n').lookup)
    assert isinstance(http, HttpLookup)
    assert (http.url, http.timeout, http.headers["Authorization"]) == \
        ("https://hlr.example/v1/hlr/sync", 3.0, "Bearer t0k")


@pytest.mark.parametrize(("text", "message"), [
    ('provider = "sandbx"\n', "[lookup] provider: unknown provider 'sandbx'; did you mean sandbox?"),
    ('provider = "http"\n', "[lookup] url: required with provider = \"http\""),
    ('provider = "http"\nurl = "ftp://x"\n', "[lookup] url: must be an http or https URL"),
    ('provider = "http"\nurl = "https://u:p@x/"\n', "[lookup] url: must be an http or https"),
    ('provider = "http"\nurl = "https://x/"\ntoken = "a"\nusername = "b"\n',
     "[lookup] token: give a token or a username and password, not both"),
    ('provider = "http"\nurl = "https://x/"\npassword = "p"\n',
     "[lookup] password: a password needs a username"),
    ("timeout = 0\n", "[lookup] timeout: must be a positive number"),
    ("tiemout = 1\n", "[lookup] tiemout: unknown setting; did you mean timeout?"),
])
def test_lookup_configuration_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, "[lookup]\n" + text)
    assert message in str(caught.value), str(caught.value)


def test_price_lists_take_hlr_rows() -> None:
    rows = parse_csv("Country,Code,MCCMNC,Network,Price,Channel\nEstonia,EE,,,0.004,hlr\n"
                     "Estonia,EE,,,0.04,sms\n")
    assert [(r.channel, r.price) for r in rows] == [("hlr", 4_000), ("sms", 40_000)]
    assert parse_csv("Country,Code,MCCMNC,Network,Price\nFinland,FI,,,0.01\n", "hlr")[0].channel \
        == "hlr"
