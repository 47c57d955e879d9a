from django import template

from plans.money import format_money
from plans.periods import format_day, format_last_day, format_period

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


@register.filter(name="last_day")
def last_day(boundary) -> str:
    """{{ end|last_day }} → "Dec 31, 2026" for an end at Jan 1, 2027 00:00: the last day of
    service or of a cycle, written after "until"."""
    return "" if boundary is None else format_last_day(boundary)


@register.filter(name="first_day")
def first_day(boundary) -> str:
    """{{ end|first_day }} → "Jan 1, 2027": the first day on the new terms, written after
    "from"."""
    return "" if boundary is None else format_day(boundary)
