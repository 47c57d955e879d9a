"""The pricing vocabulary: literal types, rule constants, PricingError and the input checks."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, get_args

from plans import meters

Policy = Literal["per_unit", "per_block", "hard_cap", "none"]
Interval = Literal["month", "year"]
AtLimit = Literal["keep", "pause"]
LineKind = Literal[
    "plan_fee",
    "addon_fee",
    "edition_fee",
    "commitment",
    "overage",
    "proration",
    "late_usage",
    "credit",
    "credit_carried",
    "tax_correction",  # a credit note's words for VAT given back (base 0: billing.tax_corrections)
]
Change = Literal["upgrade", "downgrade", "none"]

HELPDESK_METER = meters.HELPDESK_TICKETS
RESOLUTIONS_METER = meters.AUTOMATED_RESOLUTIONS
# P4: on an annual subscription these add-on meters are charged at the end of the cycle.
DEFERRED_ON_ANNUAL = frozenset({meters.VOICE_TICKETS, meters.SMS_TICKETS})
ANNUAL_FEE_MONTHS = 10  # P1: "two months off"
MIN_COMMITMENT_UNITS = 100  # Z9
YEARLY_RESOLUTION_CAP = 10_000  # Z8

_SECOND = timedelta(seconds=1)


class PricingError(ValueError):
    """Terms, usage or periods that cannot be priced."""


# --- validation helpers ---------------------------------------------------------------------


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PricingError(f"{field} must be a non-negative int, got {value!r}")
    return value


def _minor(value: object, field: str) -> int:
    # Catalog rows keep every price as a Decimal column; a fee must still be whole minor units.
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    return _count(value, field)


def _price(value: object, field: str) -> Decimal:
    # Prices come from Decimal columns; a float here would already have lost cents.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise PricingError(f"{field} must be a Decimal or an int, got {type(value).__name__}")
    price = Decimal(value)
    if not price.is_finite() or price < 0:
        raise PricingError(f"{field} must be a finite, non-negative price, got {value}")
    return price


_CHOICES: dict[object, tuple[object, ...]] = {}


def _choice(value: object, options: object, field: str) -> None:
    allowed = _CHOICES.get(options)
    if allowed is None:
        allowed = _CHOICES[options] = get_args(options)
    if value not in allowed:
        raise PricingError(f"{field} must be one of {allowed}, got {value!r}")


def _aware(value: object, field: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise PricingError(f"{field} must be a timezone-aware datetime, got {value!r}")
    return value


def _interval_months(interval: Interval) -> int:
    return 12 if interval == "year" else 1
