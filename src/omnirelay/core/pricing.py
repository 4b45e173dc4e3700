"""Price lists: the CSV Messente's /pricelist uses, which price a message pays, and the shapes the
surfaces report prices in. Pure logic; the store keeps the lists and the balances.

A list row is (Country, Code, MCCMNC, Network, Price) as in Messente's CSV, plus the channel it
prices (a sixth column `Channel`, or the import's default channel, sms). Code is the country's
ISO 3166 alpha-2 code. A message's network is not known without a number lookup, so a message pays
its country's row without an MCCMNC when the list has one, else the highest of its country's
network prices: a prepaid balance is never charged less than the message may cost.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from omnirelay.core.money import MoneyError, format_amount, parse_amount
from omnirelay.core.sms import content_options, count_segments

COLUMNS = ("Country", "Code", "MCCMNC", "Network", "Price")
CHANNELS = ("sms", "viber", "whatsapp", "telegram", "rcs", "hlr")  # hlr: a number lookup


class PriceListError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PriceRow:
    channel: str
    country_code: str  # ISO alpha-2, upper case
    country: str  # its name as the list writes it
    mccmnc: str  # "" for the whole country
    network: str
    price: int  # micro-units per part


def region_known(code: str) -> bool:
    return phonenumbers.country_code_for_region(code) != 0


def dialing_prefix(code: str) -> str:
    return str(phonenumbers.country_code_for_region(code))


def country_name(code: str) -> str:
    """The English name of an alpha-2 code, or the code itself when it names no country."""
    # The geocoder's data costs about a second to import; only price lists and statistics use it,
    # and every CLI command (each a fresh process) would otherwise pay for it.
    from phonenumbers import geocoder

    example = phonenumbers.example_number(code) if code else None
    name = geocoder.country_name_for_number(example, "en") if example is not None else ""
    return name or code or "Unknown"


# Digits as E.164 writes them (ASCII only: \d would take other scripts' digits, which the parser
# reads differently): 8 to 15 with the country code, so the parser can refuse none for length.
_PLAIN_E164 = re.compile(r"\+?([1-9][0-9]{7,14})")


def country_of(number: str) -> str:
    """The alpha-2 code of the country an E.164 number belongs to; "" when it is none (a chat id,
    a short code, a number no country has)."""
    # Every claimed attempt asks, and the parser costs ~17 us. For a plain number whose calling
    # code has one region the parser's answer is that region whatever the rest says, so it is
    # read from the code as the parser reads it (the first of its 1-3 leading digits that is a
    # code); a code shared by several regions (+1, +7, +44, ...) needs the parser.
    plain = _PLAIN_E164.fullmatch(number)
    if plain is not None:
        digits = plain[1]
        for length in (1, 2, 3):
            regions = COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:length]))
            if regions is None:
                continue
            if len(regions) == 1:
                return regions[0] if regions[0] != "001" else ""
            break
    try:
        parsed = phonenumbers.parse(number if number.startswith("+") else "+" + number)
    except phonenumbers.NumberParseException:
        return ""
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "001" else ""


def parts_of(channel: str, content: Mapping[str, Any]) -> int:
    """Parts a message is charged for at submit: an SMS is counted by the encoder the SMS channels
    use; every other channel's message is one part (the upstream's own count settles it)."""
    if channel != "sms":
        return 1
    try:
        return max(1, count_segments(str(content.get("text", "")), **content_options(content)))
    except ValueError:  # a caller's UDH that cannot be split; the upstream's count settles it
        return 1


def parse_csv(text: str, default_channel: str = "sms") -> list[PriceRow]:
    """Rows of a price list CSV, with its header row; every problem names its line."""
    if default_channel not in CHANNELS:
        raise PriceListError(f"unknown channel {default_channel!r}; one of {', '.join(CHANNELS)}")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        raise PriceListError("the file is empty; the first line must be the header "
                             + ",".join(COLUMNS))
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c.lower() not in names]
    if missing:
        raise PriceListError(f"line 1: the header lacks {', '.join(missing)} (it needs "
                             f"{','.join(COLUMNS)}, and may have Channel)")
    index = {name: names.index(name) for name in names}
    rows: list[PriceRow] = []
    seen: set[tuple[str, str, str]] = set()
    for line, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(names):
            raise PriceListError(f"line {line}: {len(fields)} fields, the header has {len(names)}")

        def field(name: str, fields: Sequence[str] = fields) -> str:
            return fields[index[name]].strip() if name in index else ""

        code = field("code").upper()
        if not region_known(code):
            raise PriceListError(f"line {line}: Code {code!r} is not an ISO 3166 alpha-2 country "
                                 "code")
        mccmnc = field("mccmnc")
        if mccmnc and not (mccmnc.isdigit() and len(mccmnc) in (5, 6)):
            raise PriceListError(f"line {line}: MCCMNC {mccmnc!r} is not 5 or 6 digits")
        channel = field("channel").lower() or default_channel
        if channel not in CHANNELS:
            raise PriceListError(f"line {line}: unknown channel {channel!r}")
        try:
            price = parse_amount(field("price"))
        except MoneyError as exc:
            raise PriceListError(f"line {line}: Price: {exc}") from None
        key = (channel, code, mccmnc)
        if key in seen:
            raise PriceListError(f"line {line}: a second {channel} price for {code} "
                                 f"{mccmnc or '(whole country)'}")
        seen.add(key)
        rows.append(PriceRow(channel, code, field("country") or country_name(code), mccmnc,
                             field("network"), price))
    return rows


def effective(account_rows: Iterable[PriceRow], global_rows: Iterable[PriceRow]) -> list[PriceRow]:
    """An account's own list wins country by country and channel by channel over the global one."""
    own = list(account_rows)
    covered = {(r.channel, r.country_code) for r in own}
    merged = own + [r for r in global_rows if (r.channel, r.country_code) not in covered]
    return sorted(merged, key=lambda r: (r.channel, r.country, r.country_code, r.mccmnc))


def part_price(rows: Iterable[PriceRow]) -> int:
    """What one part to a country costs, from that country's rows of one channel (see above)."""
    candidates = list(rows)
    whole = [r.price for r in candidates if not r.mccmnc]
    if whole:
        return whole[0]
    return max((r.price for r in candidates), default=0)


def render_csv(rows: Iterable[PriceRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow((r.country, r.country_code, r.mccmnc, r.network, format_amount(r.price)))
    return out.getvalue()


def prices_body(code: str, rows: Sequence[PriceRow]) -> dict[str, Any]:
    """Messente's `Price` for one country; the whole-country row is listed as network "Default"
    with MCCMNC 0, as the schema wants a number there."""
    return {
        "country": code,
        "name": rows[0].country if rows else country_name(code),
        "prefix": dialing_prefix(code),
        "networks": [{"name": r.network or "Default", "price": format_amount(r.price),
                      "mccmnc": int(r.mccmnc) if r.mccmnc else 0} for r in rows],
    }


def price_info(part_price_micros: int | None, charged_parts: int | None,
               parts_count: int | None) -> dict[str, Any]:
    """Messente's PriceInfo: what the message was charged, or zeros for one never charged."""
    if part_price_micros is None or charged_parts is None:
        return {"part_price": "0", "parts_count": parts_count or 1, "total_price": "0"}
    return {"part_price": format_amount(part_price_micros), "parts_count": charged_parts,
            "total_price": format_amount(part_price_micros * charged_parts)}
