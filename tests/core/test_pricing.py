"""Money and price lists as pure logic: exact amounts, the CSV's every error, which price a
message pays, and the shapes prices are reported in."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from omnirelay.core.money import MoneyError, format_amount, parse_amount
from omnirelay.core.pricing import (
    PriceListError,
    country_name,
    country_of,
    effective,
    parse_csv,
    part_price,
    parts_of,
    price_info,
    prices_body,
    render_csv,
)

HEADER = "Country,Code,MCCMNC,Network,Price\n"


def test_amounts_are_exact_micro_units() -> None:
    assert parse_amount("10.23") == 10_230_000
    assert parse_amount("0.000001") == 1
    assert parse_amount(" 5 ") == 5_000_000
    assert parse_amount("-1.5", allow_negative=True) == -1_500_000
    assert format_amount(10_230_000) == "10.23"
    assert format_amount(45_600) == "0.0456"
    assert format_amount(0) == "0.00"
    assert format_amount(1) == "0.000001"
    assert format_amount(-1_500_000) == "-1.50"
    # 0.1 + 0.2 in micro-units is exactly 0.3, as it is not in floats
    assert format_amount(parse_amount("0.1") + parse_amount("0.2")) == "0.30"


@pytest.mark.parametrize("bad", ["", "abc", "1e3", "NaN", "Infinity", "0.0000001", "-1",
                                 "99999999999999999"])
def test_amounts_that_would_be_rounded_or_are_not_amounts_are_refused(bad: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(bad)


def test_csv_rows_with_and_without_a_channel_column() -> None:
    rows = parse_csv(HEADER + "Estonia,EE,24801,Telia,0.04\nFinland,fi,,,0.05\n", "viber")
    assert [(r.channel, r.country_code, r.mccmnc, r.network, r.price) for r in rows] == \
        [("viber", "EE", "24801", "Telia", 40_000), ("viber", "FI", "", "", 50_000)]
    rows = parse_csv("code,price,country,network,mccmnc,channel\nEE,0.01,,,,sms\n")
    assert (rows[0].country, rows[0].channel) == ("Estonia", "sms")  # the name filled in


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("Country,Code,Price\n", "lacks MCCMNC, Network"),
    (HEADER + "Estonia,EE,24801,Telia\n", "line 2: 4 fields"),
    (HEADER + "Nowhere,XX,,,0.1\n", "line 2: Code 'XX'"),
    (HEADER + "Estonia,EE,248,Telia,0.1\n", "MCCMNC '248'"),
    (HEADER + "Estonia,EE,,,0.1\nEstonia,EE,,,0.2\n", "line 3: a second sms price"),
    (HEADER + "Estonia,EE,,,cheap\n", "line 2: Price"),
    ("Country,Code,MCCMNC,Network,Price,Channel\nEstonia,EE,,,0.1,fax\n", "unknown channel"),
])
def test_csv_errors_name_their_line(text: str, message: str) -> None:
    with pytest.raises(PriceListError, match=message):
        parse_csv(text)


def test_the_account_list_wins_country_by_country_and_the_price_is_the_safe_one() -> None:
    glob = parse_csv(HEADER + "Estonia,EE,24801,Telia,0.04\nEstonia,EE,24802,Elisa,0.03\n"
                     "Finland,FI,,,0.05\n")
    own = parse_csv(HEADER + "Finland,FI,24491,DNA,0.02\n")
    merged = effective(own, glob)
    assert [(r.country_code, r.price) for r in merged] == \
        [("EE", 40_000), ("EE", 30_000), ("FI", 20_000)]
    estonia = [r for r in merged if r.country_code == "EE"]
    assert part_price(estonia) == 40_000  # network unknown: the highest
    with_default = estonia + parse_csv(HEADER + "Estonia,EE,,,0.035\n")
    assert part_price(with_default) == 35_000  # the whole-country row when there is one
    assert part_price([]) == 0
    assert render_csv(merged).splitlines() == [
        "Country,Code,MCCMNC,Network,Price", "Estonia,EE,24801,Telia,0.04",
        "Estonia,EE,24802,Elisa,0.03", "Finland,FI,24491,DNA,0.02"]


def _parsed_country(number: str) -> str:
    """country_of as the parser alone answers it (what its shortcut must agree with)."""
    try:
        parsed = phonenumbers.parse(number if number.startswith("+") else "+" + number)
    except phonenumbers.NumberParseException:
        return ""
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "001" else ""


def test_country_of_agrees_with_the_parser_for_every_calling_code() -> None:
    draw = random.Random(16)
    wide = "".join(chr(0xFF10 + int(d)) for d in "37255512345")  # full-width digits
    numbers = ["", "+", "+0", "00372555123", "+0372555123", "+" + wide, wide,
               "+372 5551 2345", "+372-5551-2345", "372555", "+1", "+999999999999"]
    for code in COUNTRY_CODE_TO_REGION_CODE:
        for length in range(3, 21):  # digits with the code: well either side of E.164's 8 to 15
            rest = length - len(str(code))
            for lead in ("", "0", "1", "9"):
                tail = "".join(draw.choice("0123456789") for _ in range(max(0, rest - len(lead))))
                digits = f"{code}{lead}{tail}"[:length]
                numbers += [f"+{digits}", digits]
    assert len(numbers) > 20_000
    assert [n for n in numbers if country_of(n) != _parsed_country(n)] == []


def test_countries_parts_and_report_shapes() -> None:
    assert country_of("+37255512345") == "EE"
    assert country_of("37255512345") == "EE"
    assert country_of("chat-1234") == ""
    assert country_name("FI") == "Finland"
    assert country_name("") == "Unknown"
    assert parts_of("sms", {"text": "x" * 161}) == 2
    assert parts_of("sms", {"text": "õ" * 71, "autoconvert": "off"}) == 2  # UCS-2
    assert parts_of("viber", {"text": "x" * 900}) == 1
    assert price_info(40_000, 2, 2) == {"part_price": "0.04", "parts_count": 2,
                                        "total_price": "0.08"}
    assert price_info(None, None, 3) == {"part_price": "0", "parts_count": 3, "total_price": "0"}
    rows = parse_csv(HEADER + "Estonia,EE,,,0.05\n")
    assert prices_body("EE", rows) == {"country": "EE", "name": "Estonia", "prefix": "372",
                                       "networks": [{"name": "Default", "price": "0.05",
                                                     "mccmnc": 0}]}
