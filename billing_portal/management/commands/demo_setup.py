"""Demo data for `make demo`: a merchant login, an account on Basic with add-ons, its stores;
a second merchant who pays through Shopify (its shop on the Shopify stand-in, an app
subscription waiting for approval); and two more whose invoices show the other tax branches
(docs/tax.md): a German company with a VAT id VIES confirms (reverse charge) and a US company
in Washington (sales tax). The demo's seller is French: the main merchant pays French VAT.

Safe to run again: existing rows are reused and the demo password is reset (and printed).
"""

import json
import secrets
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, BillingChannel, Integration, Membership, ShopifyShop
from billing import payments, shopify_billing, tax_checks
from metering.models import Event
from plans import services as plan_services

DEMO_SLUG = "demo-store"
DEMO_EMAIL = "merchant@demo.example"
# A teammate who answers tickets: sees the Billing & Usage page, changes nothing on it.
AGENT_EMAIL = "agent@demo.example"
# The merchant who pays through Shopify (docs/demo.md, "Paid through Shopify").
SHOPIFY_SLUG = "demo-shopify"
SHOPIFY_EMAIL = "shopify-merchant@demo.example"
SHOPIFY_DOMAIN = "demo-shopify.myshopify.com"
# $100.00 per 30 days instead of the default $10,000.00: a few hundred simulated tickets over
# Basic's allowance reach it, so the tour shows a held part and a cap raise.
SHOPIFY_DEMO_CAP_MINOR = 10_000
# The demo merchants' tax identities (docs/tax.md). The VAT ids are ones the VIES stand-in
# (scripts/vies_standin.py) says are registered; they are asked at setup, as a change would be.
MAIN_TAX_IDENTITY = {
    "company": "Demo Store SARL",
    "address_line1": "2 avenue Modele",
    "postal_code": "69002",
    "city": "Lyon",
    "country": "FR",
    "vat_id": "FR44732829320",
}
TAX_MERCHANTS = (
    {
        "slug": "demo-gmbh",
        "name": "Demo GmbH",
        "email": "gmbh@demo.example",
        "currency": "EUR",
        "identity": {
            "company": "Beispiel Support GmbH",
            "address_line1": "Musterstrasse 1",
            "postal_code": "10115",
            "city": "Berlin",
            "country": "DE",
            "vat_id": "DE123456788",
        },
        "words": "Germany, VAT id confirmed by VIES: reverse charge",
    },
    {
        "slug": "demo-seattle",
        "name": "Demo Seattle",
        "email": "seattle@demo.example",
        "currency": "USD",
        "identity": {
            "company": "Demo Seattle Inc",
            "address_line1": "400 Pine Street",
            "postal_code": "98101",
            "city": "Seattle",
            "country": "US",
            "us_state": "WA",
        },
        "words": "Washington, US: 6.5 % sales tax",
    },
)


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
                **MAIN_TAX_IDENTITY,
            )
            # Asked before the first invoice, which its answer taxes.
            vies_ask(account)
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
        shopify_password, shopify_note = self.shopify_merchant(partner)
        tax_logins = [
            (merchant, self.tax_merchant(partner, merchant, since=since))
            for merchant in TAX_MERCHANTS
        ]
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
                    f"  Merchant who pays through Shopify: {site}/billing/{SHOPIFY_SLUG}/",
                    f"    owner: {SHOPIFY_EMAIL} / {shopify_password}",
                    f"    {shopify_note}",
                    *(
                        f"  {m['words']}: {site}/billing/{m['slug']}/invoices/\n"
                        f"    owner: {m['email']} / {tax_password}"
                        for m, tax_password in tax_logins
                    ),
                    f"  Operator console: {site}/console/  (admin: {site}/admin/)",
                    f"    operator / {operator_password}",
                    f"  Partner API key: {raw_key}  (docs: {site}/api/docs/)",
                    f"  Sent mail: {site}/demo/mail/  (files in {mail_folder})",
                    "  Fast-forward a month: make demo-advance DAYS=31",
                    "",
                ]
            )
        )

    def shopify_merchant(self, partner) -> tuple[str, str]:
        """The account that pays through its shop on the Shopify stand-in, with an app
        subscription for the merchant to approve; returns its owner's password and what to do
        next. The stand-in keeps its state in memory: each start makes the shop on it again
        (with a new access token) and, while nothing is active yet, asks for a subscription
        again, since the last start's approval link died with the last stand-in."""
        token = f"shpat_demo_{secrets.token_hex(16)}"
        standin_shop_create(domain=SHOPIFY_DOMAIN, token=token, currency="USD")
        account = Account.objects.filter(slug=SHOPIFY_SLUG).first()
        if account is None:
            account = plan_services.account_open(
                slug=SHOPIFY_SLUG,
                name="Demo Shopify Store",
                billing_email=SHOPIFY_EMAIL,
                currency="USD",
                plan_code="basic",
                interval="30d",
                addons=[],
                partner=partner,
                billing_channel=BillingChannel.SHOPIFY,
                shop_domain=SHOPIFY_DOMAIN,
                access_token=token,
                company="Demo Shopify Store Inc",
                country="US",
            )
        shop = ShopifyShop.objects.get(account=account)
        shop.set_access_token(token)
        shop.capped_amount_minor = SHOPIFY_DEMO_CAP_MINOR
        shop.save(update_fields=["access_token_encrypted", "capped_amount_minor"])
        password = self.member_login(account, SHOPIFY_EMAIL, "Shopify", Membership.Role.OWNER)
        if shopify_billing.live_shopify_subscription(account) is not None:
            return password, (
                "its app subscription was approved before this start; the stand-in forgot it "
                "(memory only): `make clean && make demo` walks the Shopify tour again"
            )
        if account.subscriptions.filter(ended_at__isnull=True).exists():
            return password, "its subscription is live"
        shopify_billing.shopify_subscribe(account=account, plan_code="basic")
        return password, "log in and approve its subscription in Shopify (the stand-in's page)"

    def tax_merchant(self, partner, merchant: dict, *, since) -> str:
        """A merchant on Basic for 35 days whose invoices show another tax branch; returns its
        owner's password."""
        account = Account.objects.filter(slug=merchant["slug"]).first()
        if account is None:
            account = account_services.account_create(
                slug=merchant["slug"],
                name=merchant["name"],
                billing_email=merchant["email"],
                currency=merchant["currency"],
                partner=partner,
                **merchant["identity"],
            )
            vies_ask(account)
            plan_services.subscription_create(
                account=account,
                offer=plan_services.resolve_offer(code="basic"),
                interval="month",
                tiers=[],
                now=since,
            )
            payments.payment_method_set(account=account, stripe_payment_method="pm_card_visa")
        return self.member_login(
            account, merchant["email"], merchant["name"], Membership.Role.OWNER
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


def vies_ask(account: Account) -> None:
    """Ask the VIES stand-in about the account's VAT id now, as the check a change queues
    would: its first invoice is then taxed on VIES's answer (reverse charge for the German
    company). Only the stand-in: the demo never asks the EU's service."""
    if not account.vat_id:
        return
    if urlsplit(settings.VIES_API_URL).hostname not in ("127.0.0.1", "localhost"):
        raise CommandError(
            f"VIES_API_URL is {settings.VIES_API_URL}: the demo's VAT ids need the VIES "
            "stand-in on loopback (started by `make demo`)."
        )
    tax_checks.vat_id_check(account_id=account.pk)


def standin_shop_create(*, domain: str, token: str, currency: str) -> None:
    """Make the shop on the Shopify stand-in through its control API (not Shopify's: the demo
    runs only against the stand-in on loopback, which SHOPIFY_ADMIN_URL points at)."""
    admin = urlsplit(settings.SHOPIFY_ADMIN_URL)
    if admin.hostname not in ("127.0.0.1", "localhost"):
        raise CommandError(
            f"SHOPIFY_ADMIN_URL points at {admin.hostname}: the demo's Shopify merchant needs "
            "the Shopify stand-in on loopback (started by `make demo`)."
        )
    body = json.dumps({"shop_domain": domain, "access_token": token, "currency": currency})
    request = urllib.request.Request(  # noqa: S310 - loopback, checked above
        f"{admin.scheme}://{admin.netloc}/_standin/shops",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        answer.read()
