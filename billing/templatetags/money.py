from django import template

from plans.money import format_money, format_period

register = template.Library()


@register.filter(name="money")
def money(amount_minor: int, currency: str) -> str:
    """{{ invoice.total_minor|money:invoice.currency }} → "$140.00"."""
    return format_money(int(amount_minor), currency)


@register.filter(name="last_day")
def last_day(end):
    """The last instant a half-open period [start, end) covers, for "Nov 1 – Nov 30"."""
    from datetime import timedelta

    return end - timedelta(microseconds=1)


@register.filter(name="period")
def period(start, end) -> str:
    """{{ start|period:end }} → "Nov 21 – Dec 20, 2026": the last day covered, not the end."""
    if start is None or end is None:
        return ""
    return format_period(start, end)
