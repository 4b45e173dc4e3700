"""Money as integer micro-units (millionths of the currency unit), never floats.

Prices are fractions of a cent (Messente lists SMS prices like 0.0456), so cents would not do;
a micro-unit holds every price a price list writes with up to six decimals, exactly, and sums of
them stay exact integers in BigInteger columns on both databases.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROS = 1_000_000
CURRENCY = "EUR"  # what /get_balance and price_info mean, and Twilio's price_unit
MAX_AMOUNT = 10**12 * MICROS  # far above any balance, far below BigInteger's limit


class MoneyError(ValueError):
    pass


def parse_amount(text: str, *, allow_negative: bool = False) -> int:
    """'10.23' -> 10230000. More than six decimals, exponents, NaN and the like are refused, so
    nothing is rounded away silently."""
    cleaned = text.strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise MoneyError(f"{text!r} is not an amount") from None
    if not value.is_finite() or "e" in cleaned.lower():
        raise MoneyError(f"{text!r} is not an amount")
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise MoneyError(f"{text!r} has more than six decimals")
    if micros < 0 and not allow_negative:
        raise MoneyError(f"{text!r} is negative")
    if abs(micros) > MAX_AMOUNT:
        raise MoneyError(f"{text!r} is too large")
    return int(micros)


def format_amount(micros: int) -> str:
    """10230000 -> '10.23', 45600 -> '0.0456', 0 -> '0.00': at least two decimals, no trailing
    zeros beyond them."""
    value = Decimal(micros).scaleb(-6)
    text = f"{value:.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"
