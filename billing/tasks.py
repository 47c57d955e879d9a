"""Celery tasks of billing: thin, safe to run twice or concurrently."""

from celery import shared_task

from . import payments, services


@shared_task(name="billing.run_billing")
def run_billing_task() -> int:
    """Periodic (beat): close every period that ended; concurrent runs split the work."""
    return len(services.run_billing().invoices)


@shared_task(name="billing.tasks.payment_charge_invoices", acks_late=True)
def payment_charge_invoices(invoice_ids: list[int]) -> int:
    """Charge freshly issued invoices. Run twice, it charges nothing twice: each attempt's
    idempotency key is saved before Stripe is called, and paid invoices are skipped."""
    return payments.invoices_charge(invoice_ids=invoice_ids)


@shared_task(name="billing.tasks.payment_process_webhook")
def payment_process_webhook(stripe_event_id: str) -> bool:
    from . import webhooks

    return webhooks.stripe_event_process(stripe_event_id=stripe_event_id)
