"""Template helpers of the billing pages."""

from django import template
from django.utils.html import format_html, format_html_join

from accounts.form_tokens import TOKEN_FIELD, new_form_token
from billing import phrases
from billing.pages.rules_text import rule_words
from plans.selectors import Course, subscription_course

register = template.Library()


@register.simple_tag
def form_token() -> str:
    """A one-time token: the same form posted twice (a double click) acts once."""
    return format_html('<input type="hidden" name="{}" value="{}">', TOKEN_FIELD, new_form_token())


@register.filter
def covers(invoice) -> tuple:
    """{% for c in invoice|covers %}{{ c.words }}{% endfor %}: "Usage Nov 1 – Nov 30, 2026",
    "Fees Dec 1 – Dec 31, 2026" (billing.phrases, the one wording of every surface)."""
    return phrases.invoice_covers(invoice)


@register.filter
def covers_text(invoice) -> str:
    """{{ invoice|covers_text }}: the covers on one line, "; " between them."""
    return phrases.covers_words(phrases.invoice_covers(invoice))


@register.filter
def tax_included(invoice) -> str:
    """{{ invoice|tax_included }}: "incl. €12.27 VAT", or nothing when it carries no tax."""
    return phrases.tax_included_words(invoice)


@register.filter
def rule_text(rule_id: str) -> str:
    return rule_words(rule_id)


@register.filter
def status_class(status: str) -> str:
    return {
        "paid": "ok",
        "past_due": "bad",
        "requires_confirmation": "warn",
        "open": "info",
        "void": "muted",
        "uncollectible": "bad",
        "disputed_lost": "bad",
    }.get(status, "muted")


@register.filter
def shopify_class(status: str) -> str:
    """The badge of a Shopify app-subscription status."""
    return {
        "ACTIVE": "ok",
        "PENDING": "warn",
        "FROZEN": "bad",
        "DECLINED": "bad",
        "EXPIRED": "bad",
    }.get(status, "muted")


@register.filter
def percent_of(value: int, total: int) -> int:
    if not total:
        return 0
    return min(100, int(value) * 100 // int(total))


@register.filter
def thousands(value) -> str:
    """2000 → "2,000" (units, not money: money goes through the money filter)."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return value


@register.filter
def unit_money(unit_price_minor, currency: str) -> str:
    """A per-unit price, sub-cent digits included: Decimal("150") → "$1.50"."""
    from decimal import Decimal

    from plans.money import format_unit_price

    return format_unit_price(Decimal(unit_price_minor), currency)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@register.simple_tag
def chart_bars(chart, included):
    """The chart's bars as SVG <rect>s, built here rather than in a template loop: a
    template localizes every number it prints (a few hundred per Usage page), which cost that
    page a third of its rendering time."""
    return format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" class="bar{}"><title>{} {}: +{}, {} so far'
        "</title></rect>",
        (
            (
                bar.x,
                bar.y,
                bar.width,
                bar.height,
                " over" if included and bar.total > included else "",
                _MONTHS[bar.day.month - 1],
                bar.day.day,
                bar.added,
                bar.total,
            )
            for bar in chart.bars
        ),
    )


@register.filter
def course(subscription) -> Course | None:
    """{% with c=subscription|course %}: renews, ends or ended, and the boundary (see
    plans.selectors.Course and templates/billing/_course.html, its one sentence)."""
    return None if subscription is None else subscription_course(subscription)
