from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import Account


class Command(BaseCommand):
    help = (
        "Create an API key and print it once. --partner alone: a partner key reaching every "
        "account of that partner (created if new). With --account: a key for that account only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--partner", required=True, help="Partner name (created if new).")
        parser.add_argument(
            "--account",
            action="append",
            default=[],
            metavar="SLUG",
            help="Scope the key to this account (repeat for one key per account).",
        )
        parser.add_argument("--name", default="", help="A label for the key.")

    def handle(self, *args, partner, account, name, **options):
        owner = services.partner_get_or_create(name=partner)
        accounts = []
        for slug in account:
            found = Account.objects.filter(slug=slug).first()
            if found is None:
                raise CommandError(f"No account '{slug}'.")
            if found.partner_id not in (None, owner.pk):
                raise CommandError(f"Account '{slug}' belongs to another partner.")
            accounts.append(found)
        for scope in accounts or [None]:
            key, raw = services.api_key_create(partner=owner, account=scope, name=name)
            label = f"account {scope.slug}" if scope else f"partner {owner.name}"
            self.stdout.write(f"{raw}\n")
            self.stderr.write(
                f"Key {key.prefix}… for {label}. Store it now: it is not shown again.\n"
            )
