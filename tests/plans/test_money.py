"""Money helpers (P9): integer minor units, exact per-unit prices, formatting without floats."""

from decimal import Decimal
from fractions import Fraction

import pytest

from plans.money import (
    MoneyError,
    currency_exponent,
    format_money,
    round_minor,
    to_minor,
    unit_price_to_minor,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("100.5"), 101),  # 3 x 0.335 $ = 1.005 $ -> 101 cents
        (Decimal("100.4999"), 100),
        (Decimal("2.5"), 3),  # half up, not half even (which gives 2)
        (Decimal("3.5"), 4),
        (Decimal("0.5"), 1),
        (Decimal("0.4999999999"), 0),
        (Decimal("-2.5"), -3),  # a credit rounds away from zero, the mirror of a charge
        (Decimal("-2.4"), -2),
        (Decimal("14000"), 14000),
        (Decimal("1E+3"), 1000),
        (Fraction(5, 2), 3),
        (Fraction(1, 3), 0),
        (Fraction(2, 3), 1),
        (7, 7),
        (0, 0),
    ],
)
def test_P9_round_minor_half_up(value, expected):
    assert round_minor(value) == expected
    assert type(round_minor(value)) is int


@pytest.mark.parametrize("value", [0.5, 2.5, True, "2.5", Decimal("NaN"), Decimal("Infinity")])
def test_P9_round_minor_refuses_floats_and_non_numbers(value):
    with pytest.raises(MoneyError):
        round_minor(value)


@pytest.mark.parametrize(
    ("currency", "exponent"), [("USD", 2), ("EUR", 2), ("GBP", 2), ("JPY", 0), ("CHF", 2)]
)
def test_P9_currency_exponent(currency, exponent):
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize("currency", ["ZZZ", "usd", "", None])
def test_P9_unknown_currency_is_refused(currency):
    with pytest.raises(MoneyError):
        currency_exponent(currency)
    with pytest.raises(MoneyError):
        format_money(100, currency)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("140"), "USD", 14_000),
        (Decimal("60.00"), "USD", 6_000),
        (Decimal("1234.5"), "EUR", 123_450),
        (Decimal("0.01"), "GBP", 1),
        (Decimal("1200"), "JPY", 1_200),
        (10, "USD", 1_000),
        (Decimal("-5"), "USD", -500),
    ],
)
def test_P9_to_minor(amount, currency, expected):
    assert to_minor(amount, currency) == expected
    assert type(to_minor(amount, currency)) is int


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (Decimal("0.335"), "USD"),  # a per-unit price: unit_price_to_minor, never to_minor
        (Decimal("1.5"), "JPY"),
        (0.4, "USD"),
        (Decimal("NaN"), "USD"),
        (Decimal("1"), "ZZZ"),
    ],
)
def test_P9_to_minor_refuses_sub_minor_amounts_floats_and_unknown_currencies(amount, currency):
    with pytest.raises(MoneyError):
        to_minor(amount, currency)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("0.40"), "USD", Decimal("40")),  # Starter's overage, per ticket
        (Decimal("0.335"), "USD", Decimal("33.5")),
        (Decimal("40"), "USD", Decimal("4000")),
        (Decimal("1.5"), "JPY", Decimal("1.5")),
        (2, "EUR", Decimal("200")),
        (Decimal("0.0001"), "USD", Decimal("0.01")),
    ],
)
def test_P9_unit_price_to_minor_is_exact(amount, currency, expected):
    result = unit_price_to_minor(amount, currency)
    assert isinstance(result, Decimal)
    assert result == expected


def test_P9_unit_price_to_minor_refuses_floats():
    with pytest.raises(MoneyError):
        unit_price_to_minor(0.4, "USD")


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [
        (14_000, "USD", "$140.00"),
        (123_450, "EUR", "€1,234.50"),
        (-500, "GBP", "-£5.00"),
        (1_200, "JPY", "¥1,200"),
        (0, "USD", "$0.00"),
        (5, "USD", "$0.05"),
        (-5, "USD", "-$0.05"),
        (123_456_789, "USD", "$1,234,567.89"),
        (1_250, "CHF", "CHF 12.50"),
        (100_000_000, "JPY", "¥100,000,000"),
    ],
)
def test_P9_format_money(amount_minor, currency, expected):
    assert format_money(amount_minor, currency) == expected


@pytest.mark.parametrize("amount_minor", [140.0, Decimal("140"), True, "140"])
def test_P9_format_money_takes_integer_minor_units_only(amount_minor):
    with pytest.raises(MoneyError):
        format_money(amount_minor, "USD")
