"""What the tabs share: a period's last day, a meter's overage policy
in words."""

from datetime import date, datetime, timedelta

from plans import pricing

from ...models import InvoiceStatus

S = InvoiceStatus


def last_day(end: datetime) -> date:
    """The last day a half-open period [start, end) covers."""
    return (end - timedelta(microseconds=1)).date()


def _policy_words(terms: pricing.MeterTerms | None, currency: str) -> str:
    from plans.money import format_money, format_unit_price

    if terms is None:
        return "Not in your plan: counted, not billed."
    if terms.policy == "hard_cap":
        return "No overage: paused at the limit until the period ends (C2)."
    if terms.policy == "per_block":
        assert terms.block_price_minor is not None  # MeterTerms requires it for per_block
        return (
            f"Beyond it, {format_money(terms.block_price_minor, currency)} "
            f"per block of {terms.block_size:,} (P2)."
        )
    if terms.unit_price_minor is None:  # "none": AI paused at the limit (Z9)
        return "Beyond it, nothing is billed: the feature pauses at the limit."
    return f"Beyond it, {format_unit_price(terms.unit_price_minor, currency)} each."
