"""Money helpers: integer minor units, exact Decimal per-unit prices, no floats anywhere.

Pure module (no Django, no I/O). Amounts are ``int`` minor units of one currency (cents for
USD/EUR/GBP, yen for JPY); per-unit prices that need sub-minor precision are ``Decimal`` minor
units (0.335 $ is ``Decimal("33.5")``). Rounding happens once per invoice line, half up (P9).

Public API
    MoneyError                                          bad amount or unknown currency
    currency_exponent(currency: str) -> int             ISO 4217 minor-unit exponent
    to_minor(amount: Decimal | int, currency: str) -> int
        major units -> minor units; refuses amounts finer than the currency's minor unit
    unit_price_to_minor(amount: Decimal | int, currency: str) -> Decimal
        a major-unit per-unit price -> exact Decimal minor units (0.335 USD -> Decimal("33.5"))
    round_minor(value: Decimal | Fraction | int) -> int
        round half up (half away from zero) to a whole number of minor units
    format_money(amount_minor: int, currency: str) -> str   "$140.00", "€1,234.50", "-£5.00"
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

__all__ = [
    "MoneyError",
    "currency_exponent",
    "format_money",
    "round_minor",
    "to_minor",
    "unit_price_to_minor",
]


class MoneyError(ValueError):
    """An amount or currency that money helpers refuse to handle."""


# ISO 4217 exponent and the prefix we print. A currency missing here is refused rather than
# guessed: a wrong exponent would silently bill 100x too much or too little.
_CURRENCIES: dict[str, tuple[int, str]] = {
    "USD": (2, "$"),
    "EUR": (2, "€"),
    "GBP": (2, "£"),
    "JPY": (0, "¥"),
    "CAD": (2, "CA$"),
    "AUD": (2, "A$"),
    "CHF": (2, "CHF "),
}


def currency_exponent(currency: str) -> int:
    """Return how many decimal places the currency's minor unit has (USD 2, JPY 0)."""
    try:
        return _CURRENCIES[currency][0]
    except (KeyError, TypeError):
        raise MoneyError(f"unknown currency {currency!r}") from None


def _exact(value: object, what: str) -> Fraction:
    # Fraction(Decimal) is exact; floats are refused outright (bool is an int subclass).
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, Fraction)):
        raise MoneyError(f"{what} must be a Decimal, Fraction or int, not {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise MoneyError(f"{what} must be finite, got {value}")
    return Fraction(value)


def round_minor(value: Decimal | Fraction | int) -> int:
    """Round an exact amount of minor units half up (away from zero) to an int (P9)."""
    if type(value) is int:
        return value  # already whole (bool, an int subclass, is refused below)
    exact = _exact(value, "value")
    magnitude = abs(exact)
    # floor(m + 1/2) in integers: a credit of -2.5 becomes -3, the mirror of a charge of 2.5.
    whole = (2 * magnitude.numerator + magnitude.denominator) // (2 * magnitude.denominator)
    return whole if exact >= 0 else -whole


def to_minor(amount: Decimal | int, currency: str) -> int:
    """Convert a major-unit amount to minor units, refusing any sub-minor remainder."""
    exponent = currency_exponent(currency)
    # Annotated: int ** int is typed Any (a negative power would give a float).
    scaled: Fraction = _exact(amount, "amount") * 10**exponent
    if scaled.denominator != 1:
        # A fee or a block price must be whole minor units; sub-minor per-unit prices go
        # through unit_price_to_minor and are rounded once per line, never here.
        raise MoneyError(f"{amount} {currency} is finer than the currency's minor unit")
    return scaled.numerator


def unit_price_to_minor(amount: Decimal | int, currency: str) -> Decimal:
    """Convert a major-unit per-unit price to exact Decimal minor units."""
    exponent = currency_exponent(currency)
    _exact(amount, "amount")
    sign, digits, power = Decimal(amount).as_tuple()
    # Shifting the exponent is exact whatever the decimal context's precision.
    return Decimal((sign, digits, int(power) + exponent))


def format_money(amount_minor: int, currency: str) -> str:
    """Format integer minor units for people: "$140.00", "€1,234.50", "¥1,200", "-$5.00"."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise MoneyError(f"amount_minor must be an int, not {type(amount_minor).__name__}")
    exponent = currency_exponent(currency)
    symbol = _CURRENCIES[currency][1]
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    decimals = f".{fraction:0{exponent}d}" if exponent else ""
    return f"{sign}{symbol}{whole:,}{decimals}"


def format_unit_price(unit_price_minor: Decimal, currency: str) -> str:
    """A per-unit price written exactly, sub-minor digits included: Decimal("33.5") → "$0.335".

    Shown, not rounded: rounding happens once per invoice line, on the amount (P9)."""
    magnitude = abs(unit_price_minor)
    whole = int(magnitude)
    text = format_money(whole, currency)
    fraction = magnitude - whole
    if fraction:
        digits = format(fraction.normalize(), "f").partition(".")[2]
        text += digits if currency_exponent(currency) else f".{digits}"
    return f"-{text}" if unit_price_minor < 0 else text
