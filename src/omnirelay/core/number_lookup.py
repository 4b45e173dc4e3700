"""Number lookup (Messente's HLR API): the request's numbers, and what can be said of a number
without asking any network. Pure logic; the providers (omnirelay.lookups) add the live fields.

A result is Messente's `SyncNumberLookupResult`. What libphonenumber's offline metadata knows is
filled in: whether the number is valid, its country, the carrier it was originally assigned to,
and its type (an omnirelay field, `numberType`, beside the spec's). What only the live network
knows (is the phone on, roaming, ported, its current network) is left null, and the status of a
valid number is UNKNOWN. MobileNetwork's `countryCode` is ISO 3166 alpha-3 (EST), as Messente
writes it; `mccmnc` is left out where it is not known, since the schema has it as a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import phonenumbers

from omnirelay.core.pricing import country_name

MAX_NUMBERS = 10
MAX_NUMBER_LENGTH = 32  # as `to`: E.164 with some spaces
# Messente's 2.1.0 file spells the phone-on/off statuses "true"/"false" (a YAML artefact of
# ON/OFF that the SDK enforces); omnirelay answers what the SDK accepts.
STATUS_ON, STATUS_OFF, STATUS_INVALID, STATUS_UNKNOWN = "true", "false", "INVALID", "UNKNOWN"
STATUSES = (STATUS_ON, STATUS_OFF, STATUS_INVALID, STATUS_UNKNOWN)
NETWORK_FIELDS = ("mccmnc", "networkName", "countryName", "countryPrefix", "countryCode")
NETWORKS = ("roamingNetwork", "currentNetwork", "originalNetwork", "portedNetwork")
_ALLOWED = frozenset(" -().")


class LookupRequestError(ValueError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LookupNumber:
    """One requested number: E.164, and what the offline metadata says of it."""

    number: str
    region: str  # ISO alpha-2, "" when the number belongs to no country
    valid: bool


def parse_request(body: Any) -> list[LookupNumber]:
    """The numbers of a `NumbersToInvestigate` body, in order (duplicates kept: each is one
    lookup). Something that is not a phone number at all is refused; a number that parses but
    that no numbering plan assigns is looked up and answered INVALID."""
    if not isinstance(body, dict):
        raise LookupRequestError("the body must be a JSON object with numbers")
    numbers = body.get("numbers")
    if numbers is None:
        raise LookupRequestError("numbers is required: an array of 1 to 10 phone numbers")
    if not isinstance(numbers, list):
        raise LookupRequestError("numbers must be an array of phone numbers")
    if not 1 <= len(numbers) <= MAX_NUMBERS:
        raise LookupRequestError(f"numbers must hold 1 to {MAX_NUMBERS} phone numbers, not "
                                 f"{len(numbers)}")
    return [lookup_number(value, f"numbers[{i}]") for i, value in enumerate(numbers)]


def lookup_number(value: Any, where: str = "number") -> LookupNumber:
    if not isinstance(value, str):
        raise LookupRequestError(f"{where} must be a phone number as a string")
    text = value.strip()
    digits = text[1:] if text.startswith("+") else text
    if (not text or len(text) > MAX_NUMBER_LENGTH or not digits.isascii()
            or not all(c.isdigit() or c in _ALLOWED for c in digits)
            or not any(c.isdigit() for c in digits)):
        raise LookupRequestError(f"{where} is not a phone number in E.164 form (+37251234567)")
    try:
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        raise LookupRequestError(f"{where} is not a phone number in E.164 form "
                                 "(+37251234567)") from None
    region = phonenumbers.region_code_for_number(parsed) or ""
    return LookupNumber(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
                        "" if region == "001" else region, phonenumbers.is_valid_number(parsed))


def alpha3(region: str) -> str:
    from iso3166 import countries_by_alpha2

    country = countries_by_alpha2.get(region)
    return country.alpha3 if country is not None else region


def network(region: str, name: str = "", mccmnc: str = "") -> dict[str, str]:
    """A MobileNetwork in `region`; `name` and `mccmnc` only when known."""
    found: dict[str, str] = {}
    if mccmnc:
        found["mccmnc"] = mccmnc
    if name:
        found["networkName"] = name
    found.update(countryName=country_name(region),
                 countryPrefix=str(phonenumbers.country_code_for_region(region)),
                 countryCode=alpha3(region))
    return found


def number_type(number: str) -> str:
    """libphonenumber's type in lower case: mobile, fixed_line, fixed_line_or_mobile, toll_free,
    voip, ... or unknown."""
    kind = phonenumbers.number_type(phonenumbers.parse(number))
    return str(phonenumbers.PhoneNumberType.to_string(kind)).lower()


def original_carrier(number: str) -> str:
    # The carrier data is imported on the first lookup only (as the geocoder in core.pricing).
    from phonenumbers import carrier

    return str(carrier.name_for_number(phonenumbers.parse(number), "en") or "")


def offline_result(item: LookupNumber) -> dict[str, Any]:
    """What is known of a number without a network: the live fields are null."""
    result: dict[str, Any] = {"number": item.number, "roaming": None, "ported": None,
                              "roamingNetwork": None, "currentNetwork": None,
                              "originalNetwork": None, "portedNetwork": None,
                              "status": STATUS_INVALID, "error": None}
    if not item.valid:
        result["error"] = "not a valid phone number"
        result["numberType"] = "unknown"
        return result
    result["status"] = STATUS_UNKNOWN
    if item.region:
        result["originalNetwork"] = network(item.region, original_carrier(item.number))
    result["numberType"] = number_type(item.number)
    return result


class UpstreamAnswerError(ValueError):
    pass


def _upstream_network(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UpstreamAnswerError(f"{where} is not an object")
    return {k: value[k] for k in NETWORK_FIELDS
            if isinstance(value.get(k), str) and value[k]}


def upstream_result(item: LookupNumber, raw: Any, where: str) -> dict[str, Any]:
    """An HLR service's answer for `item`, kept to the spec's fields and types: a client never
    sees a field or a value of the upstream's that the schema (or the SDK) would refuse. The
    offline fields fill what the upstream left out."""
    if not isinstance(raw, dict):
        raise UpstreamAnswerError(f"{where} is not an object")
    result = offline_result(item)
    status = raw.get("status")
    # Spec 2.0.0 and Messente's own answers spell the statuses ON and OFF.
    status = {"ON": STATUS_ON, "OFF": STATUS_OFF}.get(status, status) if isinstance(
        status, str) else status
    if status is not None and status not in STATUSES:
        raise UpstreamAnswerError(f"{where}.status {status!r} is not one of {', '.join(STATUSES)}")
    if status is not None:
        result["status"] = status
    for flag in ("roaming", "ported"):
        value = raw.get(flag)
        if value is not None and not isinstance(value, bool):
            raise UpstreamAnswerError(f"{where}.{flag} is not true, false or null")
        result[flag] = value
    for name in NETWORKS:
        if name in raw:
            upstream = _upstream_network(raw[name], f"{where}.{name}")
            if upstream or name != "originalNetwork":
                result[name] = upstream
    error = raw.get("error")
    result["error"] = error if error is None or isinstance(error, str) else str(error)
    return result
