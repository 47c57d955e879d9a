"""Move the demo's clock forward and run what the scheduler would have run meanwhile."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import tasks
from billing.models import Invoice
from billing.run import run_billing
from billing_portal import demo_clock
from plans.money import format_money
from plans.tasks import ecb_rates_fetch_task


class Command(BaseCommand):
    help = "Fast-forward the demo by some days: periods end, invoices are issued and collected."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, required=True)

    def handle(self, *args, days, **options):
        if not (settings.DEBUG and settings.DEMO_CLOCK_FILE):
            raise CommandError(
                "Only the demo's clock can move: run `make demo` first (production keeps real "
                "time)."
            )
        if not 1 <= days <= 3660:
            raise CommandError("--days must be between 1 and 3660.")
        path = Path(settings.DEMO_CLOCK_FILE)
        # From the clock as the file says it now (the settings read it when this process
        # started); the offset grows by `days` once, and billing runs to that instant exactly.
        demo_clock.install(path)
        before = timezone.now()
        now = before + timedelta(days=days)
        demo_clock.offset_write(path, demo_clock.offset_read(path) + timedelta(days=days))
        demo_clock.install(path)  # this process reads the new offset at once
        # The ECB rates of the days jumped over (the stand-in dates its files by the demo's
        # clock), before their invoices convert their VAT to euros; a failure is only logged.
        ecb_rates_fetch_task()
        issued_before = set(Invoice.objects.values_list("pk", flat=True))
        # Day by day, as the scheduler would have seen them: a 31-day jump crosses a period end,
        # and dunning counts its retries and reminders in days.
        day = before
        while day < now:
            day = min(day + timedelta(days=1), now)
            run_billing(as_of=day, collect=tasks.collect_later)
        self.stdout.write(f"The demo's clock now reads {now:%Y-%m-%d %H:%M} UTC (+{days} days).")
        for invoice in Invoice.objects.exclude(pk__in=issued_before).order_by("pk"):
            self.stdout.write(
                f"  {invoice.number or 'draft'}  {invoice.account.slug}  "
                f"{format_money(invoice.total_minor, invoice.currency)}  {invoice.status}"
            )
