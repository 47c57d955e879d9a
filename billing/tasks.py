"""Celery tasks of billing: thin, safe to run twice or concurrently."""

from celery import shared_task

from . import services


@shared_task(name="billing.run_billing")
def run_billing_task() -> int:
    """Periodic (beat): close every period that ended; concurrent runs split the work."""
    return len(services.run_billing().invoices)
