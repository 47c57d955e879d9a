"""Celery tasks of partner webhooks: thin, safe to run twice or at once (deliveries are
claimed before they are sent)."""

import logging

from celery import shared_task

from . import delivery

logger = logging.getLogger(__name__)


def enqueue_delivery(endpoint_id: int) -> None:
    """Called after the commit that wrote the events. A broker that is down only delays them
    to the next sweep: they are in the outbox."""
    try:
        deliver_endpoint.delay(endpoint_id)
    except Exception:
        logger.exception(
            "broker unavailable: deliveries to endpoint %s wait for the sweep", endpoint_id
        )


@shared_task(name="outbox.deliver_endpoint", acks_late=True)
def deliver_endpoint(endpoint_id: int) -> int:
    return delivery.endpoint_deliver(endpoint_id=endpoint_id)


@shared_task(name="outbox.deliver_due")
def deliver_due() -> int:
    """Periodic (beat): every endpoint with deliveries due (retries, lost tasks) gets a task."""
    endpoints = delivery.endpoints_due()
    for endpoint_id in endpoints:
        enqueue_delivery(endpoint_id)
    return len(endpoints)
