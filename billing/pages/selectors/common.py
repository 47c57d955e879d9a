"""What the tabs share: a period's last day, a meter's overage policy
in words."""

from datetime import date, datetime, timedelta

from plans import meters, pricing

from ...models import InvoiceStatus

S = InvoiceStatus


def last_day(end: datetime) -> date:
    """The last day a half-open period [start, end) covers."""
    return (end - timedelta(microseconds=1)).date()


def _policy_words(terms: pricing.MeterTerms | None, currency: str, *, paused: bool = False) -> str:
    """What happens beyond a meter's allowance, in words. `paused`: the feature the limit
    stops (Convert's campaigns, the AI agents) is paused now. Then the page's banner says until
    when; before, these words say what the limit will do, never that anything is paused."""
    from plans.money import format_money, format_unit_price

    if terms is None:
        return "Not in your plan: counted, not billed."
    if terms.policy == "hard_cap":
        if terms.meter != meters.CONVERT_CLICKS:
            return "No overage: usage beyond the allowance is not billed."
        if paused:
            return "Limit reached: nothing beyond it is billed."
        return "No overage: when the limit is reached, campaigns pause until the period ends."
    if terms.policy == "per_block":
        assert terms.block_price_minor is not None  # MeterTerms requires it for per_block
        return (
            f"Beyond it, {format_money(terms.block_price_minor, currency)} "
            f"per block of {terms.block_size:,}."
        )
    if terms.unit_price_minor is None:  # "none": the AI agents pause at the limit
        if paused:
            return "Limit reached: nothing beyond it is billed."
        return "Beyond it, nothing is billed: AI features pause when the limit is reached."
    return f"Beyond it, {format_unit_price(terms.unit_price_minor, currency)} each."
