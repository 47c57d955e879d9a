"""Feed realistic helpdesk traffic through the ingest service (the same path as the API)."""

from datetime import datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Account
from metering import services, simulator
from metering.validation import parse_timestamp
from plans.selectors import subscription_current


class Command(BaseCommand):
    help = (
        "Simulate N helpdesk tickets (email, chat, social, voice, SMS, automation, campaigns, AI)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, metavar="SLUG")
        parser.add_argument("--tickets", type=int, required=True, metavar="N")
        parser.add_argument("--profile", choices=sorted(simulator.PROFILES), default="normal")
        parser.add_argument(
            "--since", help="RFC 3339 start of the traffic (default: the current period's start)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Same seed, same events.")

    def handle(self, *args, account, tickets, profile, since, seed, **options):
        target = Account.objects.filter(slug=account).first()
        if target is None:
            raise CommandError(f"No account '{account}'.")
        if tickets < 1:
            raise CommandError("--tickets must be at least 1.")
        now = timezone.now()
        start = self._since(target, since, now)
        events = list(
            simulator.generate(tickets=tickets, since=start, now=now, profile=profile, seed=seed)
        )
        accepted = duplicates = 0
        for offset in range(0, len(events), services.MAX_BATCH):
            batch = events[offset : offset + services.MAX_BATCH]
            for event in batch:
                event["account"] = target.slug
            result = services.events_ingest(
                raw_events=batch, accounts=Account.objects.filter(pk=target.pk), fixed_account=None
            )
            if result.rejected:
                raise CommandError(f"Simulated events were rejected: {result.rejected[:3]}")
            accepted += result.accepted
            duplicates += result.duplicates
        services.reevaluate_all_pending()
        self.stdout.write(
            f"{len(events)} events for {tickets} tickets ({profile}) since {start:%Y-%m-%d %H:%M}: "
            f"{accepted} accepted, {duplicates} duplicates."
        )

    def _since(self, account: Account, since: str | None, now: datetime) -> datetime:
        if since:
            parsed = parse_timestamp(since)
            if parsed is None or parsed > now:
                raise CommandError("--since must be an RFC 3339 time in the past, with an offset.")
            return parsed
        subscription = subscription_current(account=account)
        return subscription.current_period_start if subscription else now - timedelta(days=7)
