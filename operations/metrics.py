"""Prometheus metrics served at `/metrics`.

Two kinds: counters the processes keep as things happen (events received by outcome, tasks that
failed, and django-prometheus' request metrics), and figures read from the database when
Prometheus scrapes (invoices by status, charges by outcome, dunning stages, re-evaluation lag,
outbox age, suspended subscriptions): those are the truth whichever process did the work, and
cost one aggregate query per family per scrape.

Under gunicorn (several processes) set PROMETHEUS_MULTIPROC_DIR to an empty directory shared by
the host's processes; every process' counters are then added up (docs/operations.md).
"""

import os

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# Counted where the events arrive (metering is below us); imported here so that /metrics has it.
from metering.metrics import EVENTS  # noqa: F401

TASK_FAILURES = Counter(
    "portal_task_failures", "Celery tasks that raised an exception, by task name.", ["task"]
)


class BillingCollector:
    """Figures read from the database at scrape time."""

    def collect(self):
        # Imported here: the metrics module loads with the settings' apps, before the models.
        from billing.models import Dunning, Invoice, PaymentAttempt
        from plans.models import Subscription

        from .health import backlogs

        invoices = GaugeMetricFamily(
            "portal_invoices", "Invoices and credit notes by status.", labels=["status"]
        )
        for row in Invoice.objects.values("status").annotate(n=Count("pk")).order_by():
            invoices.add_metric([row["status"]], row["n"])
        yield invoices

        attempts = GaugeMetricFamily(
            "portal_payment_attempts", "Payment attempts by outcome.", labels=["outcome"]
        )
        for row in PaymentAttempt.objects.values("status").annotate(n=Count("pk")).order_by():
            attempts.add_metric([row["status"]], row["n"])
        yield attempts

        unpaid = Dunning.objects.filter(
            invoice__status__in=["open", "past_due", "requires_confirmation"]
        )
        stages = unpaid.aggregate(
            retry_scheduled=Count("pk", filter=Q(next_retry_at__isnull=False)),
            reminder_scheduled=Count("pk", filter=Q(next_reminder_at__isnull=False)),
            suspension_scheduled=Count("pk", filter=Q(suspend_at__isnull=False)),
            held=Count("pk", filter=~Q(held_reason="")),
        )
        dunning = GaugeMetricFamily(
            "portal_dunning_invoices", "Unpaid invoices by dunning stage.", labels=["stage"]
        )
        for stage, count in stages.items():
            dunning.add_metric([stage], count)
        yield dunning

        queued = backlogs(timezone.now())
        for name, help_text, value in (
            (
                "reevaluation_backlog",
                "Subjects waiting for re-evaluation.",
                queued.reevaluation_waiting,
            ),
            (
                "reevaluation_set_aside",
                "Subjects set aside after failing to evaluate.",
                queued.reevaluation_set_aside,
            ),
            (
                "reevaluation_lag_seconds",
                "Age of the oldest subject waiting for re-evaluation.",
                queued.reevaluation_lag or 0,
            ),
            ("outbox_invoices", "Issued invoices not yet sent to Stripe.", queued.outbox_waiting),
            (
                "outbox_age_seconds",
                "Age of the oldest issued invoice not yet sent to Stripe.",
                queued.outbox_age or 0,
            ),
        ):
            yield GaugeMetricFamily(f"portal_{name}", help_text, value=value)
        yield GaugeMetricFamily(
            "portal_subscriptions_suspended",
            "Subscriptions suspended for non-payment.",
            value=Subscription.objects.filter(status="suspended").count(),
        )


def exposition() -> bytes:
    """The text Prometheus scrapes: the processes' counters, then the database's figures."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    database = CollectorRegistry(auto_describe=False)
    database.register(BillingCollector())
    return generate_latest(processes) + generate_latest(database)
