from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts import input_rules, selectors, services
from accounts.errors import DomainError
from accounts.models import Account, ApiKeyScope


def _instant(value: str) -> datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well formed but not a date, e.g. 2027-02-30
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(
            f"'{value}' is not an RFC 3339 time with an offset, e.g. 2027-01-01T00:00:00Z."
        )
    problem = input_rules.ANY_DATE.problem(parsed, now=timezone.now())
    if problem:
        raise CommandError(problem)
    return parsed


class Command(BaseCommand):
    help = (
        "Create an API key and print it once. --partner alone: a partner key reaching every "
        "account of that partner (created if new). With --account: a key for that account only. "
        "--rotate PREFIX prints a new key with the same reach while the old one keeps working "
        "until --old-key-expires (default 24 hours); --revoke PREFIX refuses a key from now on."
    )

    def add_arguments(self, parser):
        parser.add_argument("--partner", help="Partner name (created if new).")
        parser.add_argument(
            "--account",
            action="append",
            default=[],
            metavar="SLUG",
            help="Scope the key to this account (repeat for one key per account).",
        )
        parser.add_argument("--name", default="", help="A label for the key.")
        parser.add_argument(
            "--scope",
            action="append",
            choices=ApiKeyScope.values,
            help="read, write, events:write or refunds:write (repeat; default read and write).",
        )
        parser.add_argument("--expires", type=_instant, help="The key stops working then.")
        parser.add_argument("--rotate", metavar="PREFIX", help="Rotate this key (bpk_XXXXXXXX).")
        parser.add_argument(
            "--old-key-expires",
            type=_instant,
            help="With --rotate: when the old key stops working (default: in 24 hours).",
        )
        parser.add_argument("--revoke", metavar="PREFIX", help="Revoke this key now.")

    def handle(self, *args, **options):
        try:
            if options["revoke"]:
                return self._revoke(options["revoke"])
            if options["rotate"]:
                return self._rotate(options["rotate"], options["old_key_expires"])
            return self._create(options)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:  # a partner's or a key's name holding a control character
            raise CommandError(" ".join(exc.messages)) from exc

    def _revoke(self, prefix: str) -> None:
        key = services.api_key_revoke(key=selectors.api_key_get(prefix=prefix))
        self.stderr.write(f"Key {key.prefix}… revoked at {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}.\n")

    def _rotate(self, prefix: str, old_key_expires: datetime | None) -> None:
        old = selectors.api_key_get(prefix=prefix)
        new, raw = services.api_key_rotate(key=old, old_key_expires_at=old_key_expires)
        old.refresh_from_db()
        self.stdout.write(f"{raw}\n")
        self.stderr.write(
            f"Key {new.prefix}… replaces {old.prefix}…, which works until "
            f"{old.expires_at:%Y-%m-%dT%H:%M:%SZ}. Store the new key now: it is not shown again.\n"
        )

    def _create(self, options) -> None:
        if not options["partner"]:
            raise CommandError("Name the key's partner with --partner (or use --rotate/--revoke).")
        owner = services.partner_get_or_create(name=options["partner"])
        # No --account: one partner key (scope None) reaches all of the partner's accounts.
        accounts: list[Account | None] = []
        for slug in options["account"]:
            found = Account.objects.filter(slug=slug.lower()).first()
            if found is None:
                raise CommandError(f"No account '{slug}'.")
            if found.partner_id not in (None, owner.pk):
                raise CommandError(f"Account '{slug}' belongs to another partner.")
            accounts.append(found)
        for scope in accounts or [None]:
            key, raw = services.api_key_create(
                partner=owner,
                account=scope,
                name=options["name"],
                scopes=options["scope"],
                expires_at=options["expires"],
            )
            label = f"account {scope.slug}" if scope else f"partner {owner.name}"
            self.stdout.write(f"{raw}\n")
            self.stderr.write(
                f"Key {key.prefix}… for {label}, scopes {' '.join(key.scopes)}. "
                "Store it now: it is not shown again.\n"
            )
