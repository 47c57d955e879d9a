from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.input_rules import ANY_DATE
from billing import tasks
from billing.run import run_billing
from metering.validation import parse_timestamp


class Command(BaseCommand):
    help = (
        "Do once what the periodic task does, as of an instant: finalize pending windows, close "
        "every period that ended, issue invoices, apply scheduled changes. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--as-of", help="RFC 3339 instant, e.g. 2026-12-01T00:00:00Z (default: now)"
        )

    def handle(self, *args, as_of=None, **options):
        instant = None
        if as_of:
            instant = parse_timestamp(as_of)
            if instant is None:
                raise CommandError("--as-of must be an RFC 3339 time with an offset.")
            problem = ANY_DATE.problem(instant, now=timezone.now())
            if problem:
                raise CommandError(f"--as-of: {problem}")
        # Charges go to the payments workers when a broker is configured, else run here.
        run = run_billing(as_of=instant, collect=tasks.collect_later)
        self.stdout.write(
            f"As of {run.as_of:%Y-%m-%d %H:%M:%S} UTC: {run.windows_finalized} pending windows "
            f"re-evaluated, {len(run.invoices)} invoices issued, {run.changes_applied} scheduled "
            f"changes applied, {run.collection.get('collected', 0)} invoices sent to collection."
        )
        if run.set_aside:
            self.stdout.write(
                self.style.WARNING(
                    f"{len(run.set_aside)} subscriptions set aside (see Close set-asides in the "
                    f"admin): {', '.join(map(str, run.set_aside))}"
                )
            )
