"""Template helpers of the console."""

from django import template

register = template.Library()


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
