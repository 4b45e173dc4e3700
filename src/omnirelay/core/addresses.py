"""Addresses of inbound messages: the E.164 form when an address is a full international number.

SMSCs mark addresses with a type of number (TON), and many send a full international number with
TON 0 (unknown) rather than 1. An address becomes "+<digits>" when:

    TON 1 (international), digits (with or without a leading +)   always, as the SMSC says so
    any TON, written "+<digits>" or "00<digits>"                  when it is a valid number
    TON 0 (unknown), bare digits                                  when "+<digits>" is a valid number

Everything else stays as it came: alphanumeric senders, short codes (too short to be a valid
number), and bare digits with TON 2-6 (national, network specific, subscriber, alphanumeric,
abbreviated), which are not international by their own account.
"""

from __future__ import annotations

import functools

import phonenumbers

UNKNOWN, INTERNATIONAL = 0, 1


def inbound_address(address: str, ton: int) -> str:
    text = address.strip()
    if text.startswith("+"):
        digits, written_international = text[1:], True
    elif text.startswith("00"):
        digits, written_international = text[2:], True
    else:
        digits, written_international = text, False
    if not digits.isdigit():
        return text
    if ton == INTERNATIONAL and not text.startswith("00"):
        return "+" + digits
    if written_international or ton in (UNKNOWN, INTERNATIONAL):
        valid = _valid_e164("+" + digits)
        if valid is not None:
            return valid
    return text


@functools.lru_cache(maxsize=8192)
def _valid_e164(candidate: str) -> str | None:
    try:
        number = phonenumbers.parse(candidate)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def number_keys(number: str) -> tuple[str, ...]:
    """The forms an account may have registered an inbound number in ("+37255500001",
    "37255500001"), so that a normalised recipient still finds its owner."""
    text = number.strip()
    digits = text[1:] if text.startswith("+") else text
    if not digits.isdigit():
        return (text,)
    return tuple(dict.fromkeys((text, "+" + digits, digits)))
