"""Demo data for `make demo`: a merchant login, an account on Basic with add-ons, its stores.

Safe to run again: existing rows are reused and the demo password is reset (and printed).
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Integration, Membership
from billing import payments
from metering.models import Event
from plans import services as plan_services

DEMO_SLUG = "demo-store"
DEMO_EMAIL = "merchant@demo.example"
# A teammate who answers tickets: sees the Billing & Usage page, changes nothing on it.
AGENT_EMAIL = "agent@demo.example"


class Command(BaseCommand):
    help = "Create (or refresh) the demo merchant, its account and a partner API key."

    def handle(self, *args, **options):
        partner = account_services.partner_get_or_create(name="Demo partner")
        account = Account.objects.filter(slug=DEMO_SLUG).first()
        since = (timezone.now() - timedelta(days=35)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        if account is None:
            account = account_services.account_create(
                slug=DEMO_SLUG,
                name="Demo Store",
                billing_email=DEMO_EMAIL,
                currency="USD",
                partner=partner,
                company="Demo Store Ltd",
                country="FR",
            )
            # A customer for 35 days: one period to invoice and one under way.
            plan_services.subscription_create(
                account=account,
                offer=plan_services.resolve_offer(code="basic"),
                interval="month",
                tiers=plan_services.resolve_tiers(
                    choices=[
                        plan_services.AddOnChoice(addon="voice", tier="voice-20"),
                        plan_services.AddOnChoice(addon="automate", tier="automate-100"),
                        plan_services.AddOnChoice(addon="convert", tier="convert-50"),
                    ]
                ),
                now=since,
            )
            for store_name in ("demo-store.myshopify.com", "demo-outlet.myshopify.com"):
                store = account_services.store_create(
                    account=account, platform="shopify", name=store_name
                )
                for kind in (
                    Integration.Kind.CHAT,
                    Integration.Kind.EMAIL,
                    Integration.Kind.SOCIAL,
                ):
                    account_services.integration_add(
                        account=account, kind=kind, name=f"{store_name} {kind}", store=store
                    )
        password = self.member_login(account, DEMO_EMAIL, "Demo", Membership.Role.OWNER)
        agent_password = self.member_login(account, AGENT_EMAIL, "Agent", Membership.Role.AGENT)
        user_model = get_user_model()
        operator, _ = user_model.objects.get_or_create(
            username="operator", defaults={"is_staff": True, "is_superuser": True}
        )
        operator_password = secrets.token_urlsafe(9)
        operator.set_password(operator_password)
        operator.save()
        operator.groups.add(Group.objects.get(name="billing operators"))  # audit migration 0001
        if not Event.objects.filter(account=account).exists():
            # A month's worth of realistic traffic, through the same ingest path as the API.
            call_command(
                "simulate_traffic",
                "--account",
                DEMO_SLUG,
                "--tickets",
                "900",
                "--since",
                since.isoformat(),
                stdout=self.stdout,
            )
        if payments.default_payment_method(account.pk) is None:
            # A test Visa card on the stand-in, so that the demo's invoices get paid.
            payments.payment_method_set(account=account, stripe_payment_method="pm_card_visa")
        call_command("run_billing", stdout=self.stdout)  # closes the finished period
        _, raw_key = account_services.api_key_create(partner=partner, name="demo")
        mail_folder = getattr(settings, "EMAIL_FILE_PATH", "")
        site = settings.SITE_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Demo ready at {site}  (a tour for each role: docs/demo.md)",
                    f"  Merchant's Billing & Usage page: {site}/billing/{DEMO_SLUG}/",
                    f"    owner: {DEMO_EMAIL} / {password}",
                    f"    agent (looks, changes nothing): {AGENT_EMAIL} / {agent_password}",
                    f"  Operator console: {site}/console/  (admin: {site}/admin/)",
                    f"    operator / {operator_password}",
                    f"  Partner API key: {raw_key}  (docs: {site}/api/docs/)",
                    f"  Sent mail: {site}/demo/mail/  (files in {mail_folder})",
                    "  Fast-forward a month: make demo-advance DAYS=31",
                    "",
                ]
            )
        )

    def member_login(self, account: Account, email: str, first_name: str, role: str) -> str:
        """A member of the demo account with a fresh password (returned, to be printed)."""
        user, _ = get_user_model().objects.get_or_create(
            username=email, defaults={"email": email, "first_name": first_name}
        )
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.save()
        Membership.objects.get_or_create(user=user, account=account, defaults={"role": role})
        return password
