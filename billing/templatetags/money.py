from django import template

from plans.money import format_money
from plans.periods import format_period

register = template.Library()


@register.filter(name="money")
def money(amount_minor: int, currency: str) -> str:
    """{{ invoice.total_minor|money:invoice.currency }} → "$140.00"."""
    return format_money(int(amount_minor), currency)


@register.filter(name="period")
def period(start, end) -> str:
    """{{ start|period:end }} → "Nov 21 – Dec 20, 2026": the last day covered, not the end
    (plans.periods.format_period, the one way a period is written)."""
    if start is None or end is None:
        return ""
    return format_period(start, end)
