from datetime import UTC, datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.input_rules import ANY_DATE
from billing import gateway, payments
from billing.reconcile import ledger_compare


def _instant(value: str) -> datetime:
    """A date (the start of that UTC day) or an ISO instant."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"Not a date: {value!r} (use YYYY-MM-DD or an ISO time).") from exc
    if len(value) == 10:
        parsed = datetime.combine(parsed.date(), time.min)
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    problem = ANY_DATE.problem(parsed, now=timezone.now())
    if problem:
        raise CommandError(problem)
    return parsed


class Command(BaseCommand):
    help = (
        "Compare the ledger (payment attempts, paid invoices) with Stripe's payment intents and "
        "refunds for a date range; print every difference; exit 1 when there is any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="Start, a date or an ISO time (UTC).")
        parser.add_argument(
            "--until", help="End, exclusive (a date means the end of that day); default now."
        )
        parser.add_argument(
            "--settle",
            action="store_true",
            help="First let the sweeper settle attempts left without an answer.",
        )

    def handle(self, *args, since, until, settle, **options):
        start = _instant(since)
        if until is None:
            end = timezone.now()
        else:
            end = _instant(until) + (timedelta(days=1) if len(until) == 10 else timedelta(0))
        if end <= start:
            raise CommandError("--until must be after --since.")
        if settle:
            settled = payments.attempts_reconcile(as_of=timezone.now())
            self.stdout.write(f"Settled {settled} attempts left without an answer.")
        try:
            differences = ledger_compare(since=start, until=end)
        except gateway.GatewayError as exc:
            raise CommandError(str(exc)) from exc
        for difference in differences:
            self.stdout.write(str(difference))
        span = f"{start.isoformat()} to {end.isoformat()}"
        if differences:
            raise CommandError(f"{len(differences)} differences from {span}.", returncode=1)
        self.stdout.write(f"The ledger and Stripe agree from {span}.")
