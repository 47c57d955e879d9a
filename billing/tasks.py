"""Celery tasks of billing: thin (ids in, one service call), safe to run twice or at once."""

import logging
from datetime import datetime

from celery import shared_task
from django.db import transaction

from . import payments, run, shopify_webhooks, spike_guard, ticket_disputes, webhooks

logger = logging.getLogger(__name__)


def enqueue(task, *args) -> None:
    """Wake a worker once the transaction commits. The work itself is recorded in the
    database (an open invoice, a stored webhook), so a broker that is down delays it until the
    next sweep instead of losing it or failing the request."""

    def send() -> None:
        try:
            task.delay(*args)
        except Exception:
            logger.exception("broker unavailable: %s%r is left to the next sweep", task.name, args)

    transaction.on_commit(send)


def collect_account_soon(account_id: int) -> None:
    """After a card is saved or an invoice issued: charge the account's issued invoices now
    rather than at the next sweep."""
    for invoice_id in payments.collectable_invoice_ids(account_id=account_id):
        enqueue(payment_collect_invoice, invoice_id)


def collect_later(invoice_id: int) -> None:
    enqueue(payment_collect_invoice, invoice_id)


@shared_task(name="billing.run_billing")
def run_billing_task(as_of: str | None = None) -> int:
    """Periodic (beat): close every period that ended; each issued invoice is charged by its
    own task. Concurrent runs split the work."""
    at = datetime.fromisoformat(as_of) if as_of else None
    return len(run.run_billing(as_of=at, collect=collect_later).invoices)


@shared_task(name="billing.tasks.payment_collect_due")
def payment_collect_due() -> dict:
    """Periodic (beat): the collection sweep (lost answers, issued invoices, failed webhooks)."""
    return run.collect_due(collect=collect_later)


@shared_task(name="billing.tasks.payment_collect_invoice", acks_late=True)
def payment_collect_invoice(invoice_id: int) -> bool:
    """Charge one invoice if it is still due. Redelivered or run twice, it charges nothing
    twice: the attempt is claimed before Stripe is called."""
    return payments.invoice_collect(invoice_id=invoice_id) is not None


@shared_task(name="billing.tasks.payment_process_webhook", acks_late=True)
def payment_process_webhook(stripe_event_id: str) -> bool:
    return webhooks.stripe_event_process(stripe_event_id=stripe_event_id)


@shared_task(name="billing.tasks.shopify_process_webhook", acks_late=True)
def shopify_process_webhook(webhook_id: str) -> bool:
    return shopify_webhooks.shopify_webhook_process(webhook_id=webhook_id)


@shared_task(name="billing.ticket_disputes_auto_resolve")
def ticket_disputes_auto_resolve() -> int:
    """Periodic (beat): accept the contested tickets whose proof arrived after they were filed
    (the helpdesk merged them or flagged them as spam). Each is claimed under its row lock, so
    two runs at once accept it once."""
    return ticket_disputes.ticket_disputes_auto_resolve()


@shared_task(name="billing.spike_guard_tick")
def spike_guard_tick() -> dict[str, int]:
    """Periodic (beat, hourly): today's and yesterday's usage against the same weekdays,
    loops told, holds nobody decided on released after 14 days (billing.spike_guard)."""
    return spike_guard.spike_guard_tick()
