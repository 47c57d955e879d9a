"""load_catalog: the default catalog as rows, idempotently."""

from decimal import Decimal
from io import StringIO

from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from plans.models import AddOnTier, Allowance, Edition, Plan, Price, Subscription
from plans.services import resolve_offer


def snapshot():
    return {
        "plans": sorted(Plan.objects.values_list("code", "rank", "included_integrations")),
        "tiers": sorted(AddOnTier.objects.values_list("code", "rank")),
        "editions": sorted(Edition.objects.values_list("code", "resolutions_per_agent_month")),
        "prices": sorted(
            Price.objects.values_list(
                "pk",
                "plan__code",
                "addon_tier__code",
                "edition__code",
                "currency",
                "interval",
                "component",
                "unit_amount_minor",
            )
        ),
        "allowances": sorted(
            Allowance.objects.values_list("pk", "meter", "included", "overage_mode", "block_size")
        ),
    }


def test_loading_twice_leaves_the_same_rows(db):
    out = StringIO()
    call_command("load_catalog", stdout=out)
    assert "5 plans, 4 addons, 12 addon tiers, 3 editions" in out.getvalue()
    first = snapshot()
    call_command("load_catalog", stdout=StringIO())
    assert snapshot() == first


def test_loading_again_restores_the_files_amounts_and_keeps_the_operators_rows(make_account):
    """An edited catalog price goes back to the file's amount; an account's negotiated price
    and a row the file does not name are left alone, in one pass of a few statements."""
    account = make_account(slug="negotiated")
    basic = Plan.objects.get(code="basic")
    Price.objects.filter(plan=basic, account=None, interval="month", component="fee").update(
        unit_amount_minor=1
    )
    Allowance.objects.filter(plan=basic, account=None).update(included=7)
    negotiated = Price.objects.create(
        plan=basic, account=account, currency="USD", interval="month", unit_amount_minor=4200
    )
    extra = Price.objects.create(
        plan=Plan.objects.get(code="enterprise"), currency="USD", unit_amount_minor=99
    )
    with CaptureQueriesContext(connection) as queries:
        call_command("load_catalog", stdout=StringIO())
    assert price("basic", "month", "fee") == price("basic", "month", "fee", currency="EUR") == 6000
    assert Allowance.objects.get(plan=basic, account=None).included == 300
    negotiated.refresh_from_db()
    extra.refresh_from_db()
    assert (negotiated.unit_amount_minor, extra.unit_amount_minor) == (4200, 99)
    assert len(queries) < 20


def price(plan: str, interval: str, component: str, currency: str = "USD") -> Decimal:
    return Price.objects.get(
        plan__code=plan, interval=interval, component=component, currency=currency, account=None
    ).unit_amount_minor


def test_default_plans_match_the_catalog(catalog):
    expected = {  # code: (monthly fee, included tickets, overage price, block size)
        "starter": (1000, 50, Decimal("40"), None),
        "basic": (6000, 300, Decimal("4000"), 100),
        "pro": (36000, 2000, Decimal("3600"), 100),
        "advanced": (90000, 5000, Decimal("3600"), 100),
    }
    for code, (fee, included, overage, block) in expected.items():
        allowance = Allowance.objects.get(plan__code=code, meter="helpdesk_tickets")
        assert (allowance.included, allowance.block_size) == (included, block)
        assert price(code, "month", "fee") == fee
        assert price(code, "year", "fee") == 10 * fee  # two months off
        assert price(code, "month", "overage") == overage
        assert price(code, "month", "fee", currency="EUR") == fee


def test_enterprise_has_no_public_price(catalog):
    enterprise = Plan.objects.get(code="enterprise")
    assert enterprise.is_custom and enterprise.included_integrations is None
    assert not Price.objects.filter(plan=enterprise).exists()


def test_convert_tiers_are_hard_capped(catalog):
    modes = set(
        Allowance.objects.filter(addon_tier__addon__code="convert").values_list(
            "overage_mode", flat=True
        )
    )
    assert modes == {"hard_cap"}
    assert not Price.objects.filter(addon_tier__addon__code="convert", component="overage").exists()


def test_Z8_professional_is_also_sold_as_growth(make_account):
    professional = Edition.objects.get(code="professional")
    assert professional.alias == "growth"
    assert resolve_offer(code="growth") == professional
    account = make_account(slug="grows", plan="growth", full_agents=2)
    subscription = Subscription.objects.get(account=account)
    assert subscription.edition == professional and subscription.plan is None
