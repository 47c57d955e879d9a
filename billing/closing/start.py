"""P1: a subscription's first invoice, its first period's fees in advance."""

from datetime import datetime

from django.db import transaction

from plans import pricing
from plans.models import Subscription
from plans.terms import subscription_terms

from ..invoicing import invoice_issue
from ..models import Invoice, InvoiceReason


def _claim(subscription_id: int, **conditions) -> Subscription | None:
    """Lock one subscription for this transaction, or None if another run holds it or it is
    no longer due."""
    return (
        Subscription.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("account", "plan", "edition")
        .filter(pk=subscription_id, ended_at__isnull=True, **conditions)
        .first()
    )


def subscription_start_invoice(*, subscription_id: int, as_of: datetime) -> Invoice | None:
    """P1: the first invoice carries the first period's fees, in advance."""
    with transaction.atomic(durable=True):
        subscription = _claim(subscription_id)
        if subscription is None:
            return None
        return start_invoice_issue(subscription=subscription, as_of=as_of)


def start_invoice_issue(*, subscription: Subscription, as_of: datetime) -> Invoice | None:
    """The first invoice, unless issued already (the caller holds the subscription's lock).

    Priced on the terms in force at the period's start: an upgrade that comes first issues
    this invoice before it changes the terms, then bills only the difference (P6)."""
    if subscription.invoices.filter(reason=InvoiceReason.SUBSCRIPTION_START).exists():
        return None
    terms = subscription_terms(subscription)
    period = pricing.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    lines = pricing.fee_lines(terms=terms, period=period)
    if not lines:
        return None
    return invoice_issue(
        subscription=subscription,
        account_id=subscription.account_id,
        currency=subscription.account.currency,
        reason=InvoiceReason.SUBSCRIPTION_START,
        period=period,
        lines=lines,
        at=max(as_of, subscription.started_at),
    )
