"""The one place the billing stages are composed: what the periodic tasks do.

Metering finalizes its windows, closing issues invoices (each subscription on its own: one that
raises is set aside, never the batch), payments reconciles lost answers and collects whatever
is issued and unpaid, dunning runs the schedules of unpaid invoices."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from metering import services as metering_services

from . import (
    closing,
    dunning,
    payments,
    refunds,
    shopify_billing,
    shopify_usage,
    shopify_webhooks,
    spike_guard,
    webhooks,
)
from .thresholds import usage_thresholds_notify

logger = logging.getLogger(__name__)


@dataclass
class BillingRun:
    as_of: datetime
    windows_finalized: int = 0
    invoices: list[int] = field(default_factory=list)
    changes_applied: int = 0
    set_aside: list[int] = field(default_factory=list)  # subscriptions whose step raised
    threshold_emails: int = 0
    collection: dict = field(default_factory=dict)
    dunning: dict = field(default_factory=dict)
    shopify_ended: int = 0  # app subscriptions cancelled at Shopify after our end
    spike_guard: dict = field(default_factory=dict)  # anomalies opened, loops told, released


def run_billing(
    *, as_of: datetime | None = None, collect: Callable[[int], object] | None = None
) -> BillingRun:
    """Everything the periodic task does, once, as of an instant. Running it again changes
    nothing; runs that overlap split the subscriptions between them (SKIP LOCKED) and claim
    every charge before it is sent. `collect` hands one invoice id to collection (a task per
    invoice in production); by default invoices are charged here, in turn."""
    as_of = as_of or timezone.now()
    run = BillingRun(as_of=as_of)
    run.windows_finalized = metering_services.metering_tick(as_of=as_of)
    # A spike or a loop is held before any period closes over it (billing.spike_guard).
    run.spike_guard = spike_guard.spike_guard_tick(as_of=as_of)
    issued = closing.close_all(as_of=as_of)
    run.invoices, run.changes_applied, run.set_aside = (
        issued.invoices,
        issued.changes_applied,
        issued.set_aside,
    )
    run.threshold_emails = usage_thresholds_notify(as_of=as_of)
    run.collection = collect_due(as_of=as_of, collect=collect)
    run.dunning = dunning.dunning_run(as_of=as_of)
    run.shopify_ended = shopify_billing.shopify_ended_cancel(as_of=as_of)
    return run


def collect_due(
    *, as_of: datetime | None = None, collect: Callable[[int], object] | None = None
) -> dict[str, int]:
    """The collection sweep: lost answers first (so nothing in flight is sent again), then
    every issued invoice never attempted, then webhooks whose processing failed."""
    as_of = as_of or timezone.now()
    reconciled = payments.attempts_reconcile(as_of=as_of)
    # Refunds too: one whose answer was lost is looked up at Stripe before anything is re-sent.
    refunds_reconciled = refunds.refunds_reconcile(as_of=as_of)
    # Usage records that lost Shopify's answer, and held usage Shopify has room for now.
    shopify_reconciled = shopify_usage.usage_records_reconcile(as_of=as_of)
    due = payments.collectable_invoice_ids()
    for invoice_id in due:
        if collect is not None:
            collect(invoice_id)
        else:
            payments.invoice_collect(invoice_id=invoice_id, at=as_of)
    return {
        "reconciled": reconciled,
        "refunds_reconciled": refunds_reconciled,
        "shopify_reconciled": shopify_reconciled,
        "collected": len(due),
        "webhooks": webhooks.stripe_events_retry(as_of=as_of),
        "shopify_webhooks": shopify_webhooks.shopify_webhooks_retry(as_of=as_of),
    }
