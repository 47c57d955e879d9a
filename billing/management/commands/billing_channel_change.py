import os

from django.core.management.base import BaseCommand, CommandError

from accounts.errors import DomainError
from accounts.models import Account, BillingChannel
from audit.models import Source
from audit.services import acting_as
from billing.shopify_billing import account_channel_change


class Command(BaseCommand):
    help = (
        "Move an account to the other billing channel (docs/shopify.md, 'Changing channel'). "
        "Refused while any invoice of the account is unpaid. The access token is read from an "
        "environment variable, never from the command line (shell history, process lists)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--to", required=True, choices=BillingChannel.values)
        parser.add_argument("--shop-domain", help="For --to shopify: name.myshopify.com")
        parser.add_argument(
            "--access-token-env",
            metavar="VAR",
            help="For --to shopify: the environment variable holding the app's access token.",
        )
        parser.add_argument("--reason", required=True, help="Why; kept in the audit log.")

    def handle(self, *args, slug, to, shop_domain, access_token_env, reason, **options):
        account = Account.objects.filter(slug=slug.lower()).first()
        if account is None:
            raise CommandError(f"No account '{slug}'.")
        token = None
        if access_token_env:
            token = os.environ.get(access_token_env, "").strip()
            if not token:
                raise CommandError(f"The environment variable {access_token_env} is empty.")
        try:
            with acting_as(source=Source.OPERATOR):
                account = account_channel_change(
                    account=account,
                    to=to,
                    reason=reason,
                    shop_domain=shop_domain,
                    access_token=token,
                )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        follow = (
            "The next charge needs a card: the merchant is asked for one."
            if to == BillingChannel.STRIPE
            else "Start its subscription through Shopify: the merchant approves it there."
        )
        self.stdout.write(f"{account.slug} now pays through {to}. {follow}")
