"""Demo data for `make demo`: a merchant login, an account on Basic with add-ons, its stores.

Safe to run again: existing rows are reused and the demo password is reset (and printed).
"""

import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Integration, Membership
from metering.models import Event
from plans import services as plan_services

DEMO_SLUG = "demo-store"
DEMO_EMAIL = "merchant@demo.example"


class Command(BaseCommand):
    help = "Create (or refresh) the demo merchant, its account and a partner API key."

    def handle(self, *args, **options):
        partner = account_services.partner_get_or_create(name="Demo partner")
        account = Account.objects.filter(slug=DEMO_SLUG).first()
        if account is None:
            account = plan_services.account_open(
                slug=DEMO_SLUG,
                name="Demo Store",
                billing_email=DEMO_EMAIL,
                currency="USD",
                plan_code="basic",
                interval="month",
                addons=[
                    plan_services.AddOnChoice(addon="voice", tier="voice-20"),
                    plan_services.AddOnChoice(addon="automate", tier="automate-100"),
                    plan_services.AddOnChoice(addon="convert", tier="convert-50"),
                ],
                partner=partner,
                # Twenty days into its cycle, so that the demo has a period's worth of usage.
                period_start=(timezone.now() - timedelta(days=20)).replace(
                    hour=0, minute=0, second=0, microsecond=0
                ),
                company="Demo Store Ltd",
                country="FR",
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
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username=DEMO_EMAIL, defaults={"email": DEMO_EMAIL, "first_name": "Demo"}
        )
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.save()
        Membership.objects.get_or_create(
            user=user, account=account, defaults={"role": Membership.Role.OWNER}
        )
        operator, _ = user_model.objects.get_or_create(
            username="operator", defaults={"is_staff": True, "is_superuser": True}
        )
        operator_password = secrets.token_urlsafe(9)
        operator.set_password(operator_password)
        operator.save()
        if not Event.objects.filter(account=account).exists():
            # A month's worth of realistic traffic, through the same ingest path as the API.
            call_command(
                "simulate_traffic", "--account", DEMO_SLUG, "--tickets", "600", stdout=self.stdout
            )
        _, raw_key = account_services.api_key_create(partner=partner, name="demo")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Demo ready at http://127.0.0.1:8000",
                    f"  Merchant login: {DEMO_EMAIL} / {password}",
                    f"  Operator (admin at /admin/): operator / {operator_password}",
                    f"  Partner API key: {raw_key}",
                    "",
                ]
            )
        )
