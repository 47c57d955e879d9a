"""Template helpers of the console."""

from django import template
from django.utils.html import format_html

from billing import gateway, payments
from billing.models import PaymentAttempt

register = template.Library()


def _stripe_id(stripe_id: str, url: str) -> str:
    if url:
        return format_html(
            '<a href="{}" rel="noopener noreferrer" target="_blank"><code>{}</code></a>',
            url,
            stripe_id,
        )
    return format_html("<code>{}</code>", stripe_id)


@register.filter
def stripe_intent(attempt: PaymentAttempt) -> str:
    """An attempt's PaymentIntent id, linked to Stripe's dashboard when we talk to Stripe
    itself; else why there is none: "not sent" (nothing went to Stripe, or Stripe refused the
    request itself), "no answer yet" (in flight), "not recorded" (a decline recorded before
    declines kept their id: reconciliation still finds it by the attempt's key)."""
    intent = attempt.stripe_payment_intent
    if intent:
        return _stripe_id(intent, gateway.dashboard_url(payment_intent=intent))
    A = PaymentAttempt.Status
    if attempt.status in (A.CREATED, A.CANCELED) or attempt.failure_code == "stripe_refused":
        words = "not sent"
    elif attempt.status in payments.IN_FLIGHT:
        words = "no answer yet"
    else:
        words = "not recorded"
    return format_html('<span class="muted">{}</span>', words)


@register.filter
def stripe_customer(customer: str) -> str:
    """The account's Stripe customer id, linked to Stripe's dashboard like an intent."""
    if not customer:
        return "—"
    return _stripe_id(customer, gateway.dashboard_url(customer=customer))


@register.filter
def audit_value(value) -> str:
    """A before/after of the audit log in words: "past_due", "plan: pro, interval: month"."""
    if value is None or value == "":
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')}: {audit_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(audit_value(v) for v in value)
    return str(value).replace("_", " ")


@register.filter
def action_words(action: str) -> str:
    """ "operator.mark_paid" → "operator: mark paid"."""
    return action.replace(".", ": ", 1).replace("_", " ")


@register.filter
def label_of(code: str, kind: str) -> str:
    """A meter's or a feature's name as the catalog writes it: "sms_tickets" → "SMS tickets"."""
    from metering.models import Feature
    from plans.models import Meter

    choices = {"meter": Meter, "feature": Feature}[kind]
    label = dict(choices.choices).get(code, code.replace("_", " "))
    return label[:1].upper() + label[1:]
