import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account
from billing.shopify_reconcile import shopify_reconcile


class Command(BaseCommand):
    help = (
        "Compare Shopify-channel accounts with Shopify: app subscriptions (status, cap, balance "
        "used, interval end) and usage records by idempotency key. Refreshes our mirror of "
        "Shopify's figures; never posts or deletes money. Exit code 1 when money differs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", help="One account's slug (default: every one).")

    def handle(self, *args, account=None, **options):
        one = None
        if account:
            one = Account.objects.filter(slug=account.lower()).first()
            if one is None:
                raise CommandError(f"No account '{account}'.")
            if not one.pays_through_shopify:
                raise CommandError(f"Account '{one.slug}' pays by card, not through Shopify.")
        report = shopify_reconcile(account=one)
        if report.settled:
            self.stdout.write(f"Usage records settled by asking Shopify first: {report.settled}")
        for result in report.accounts:
            self.stdout.write(f"{result.slug}:")
            for line in result.lines:
                self.stdout.write(f"  {line}")
        differences = report.money_differences
        marked = " (lines marked MONEY)." if differences else "."
        self.stdout.write(
            f"{len(report.accounts)} account(s) compared; {differences} money difference(s)"
            + marked
        )
        if differences:
            sys.exit(1)
