"""Bad catalog or subscription data is refused by the model or the database, and the admin
shows what to fix."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from plans.models import Plan, Price, Subscription


def test_database_refuses_a_negative_price(catalog):
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.create(
            plan=Plan.objects.get(code="basic"), currency="GBP", unit_amount_minor=Decimal("-1")
        )


def test_database_refuses_an_unknown_currency(catalog):
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.create(
            plan=Plan.objects.get(code="basic"), currency="XYZ", unit_amount_minor=Decimal("1")
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.create(slug="x", name="X", billing_email="x@x.example", currency="XYZ")


def test_database_refuses_a_price_with_two_owners(catalog):
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.create(
            plan=Plan.objects.get(code="basic"),
            edition_id=1,
            currency="USD",
            interval="month",
            component="commitment",
            unit_amount_minor=Decimal("1"),
        )


def test_database_refuses_a_second_live_subscription(account):
    live = Subscription.objects.get(account=account)
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(
            account=account,
            plan=live.plan,
            interval="month",
            billing_anchor=now,
            current_period_start=now,
            current_period_end=now + timedelta(days=30),
            started_at=now,
        )


def test_database_refuses_a_period_ending_before_it_starts(account):
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.filter(account=account).update(
            current_period_end=timezone.now() - timedelta(days=400)
        )


@pytest.fixture
def operator_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client.force_login(admin)
    return client


def test_admin_shows_what_to_fix_for_a_negative_price(operator_client, catalog):
    plan = Plan.objects.get(code="basic")
    response = operator_client.post(
        "/admin/plans/price/add/",
        {
            "plan": plan.pk,
            "currency": "GBP",
            "interval": "month",
            "component": "fee",
            "unit_amount_minor": "-5",
        },
    )
    assert response.status_code == 200  # the form again, not a crash
    assert b"A price cannot be negative." in response.content
    assert not Price.objects.filter(currency="GBP").exists()


def test_admin_shows_what_to_fix_for_an_unknown_currency(operator_client, catalog):
    plan = Plan.objects.get(code="basic")
    response = operator_client.post(
        "/admin/plans/price/add/",
        {
            "plan": plan.pk,
            "currency": "XYZ",
            "interval": "month",
            "component": "fee",
            "unit_amount_minor": "5",
        },
    )
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content


def test_admin_refuses_an_overlapping_subscription(operator_client, account):
    live = Subscription.objects.get(account=account)
    start = timezone.now()
    response = operator_client.post(
        "/admin/plans/subscription/add/",
        {
            "account": account.pk,
            "plan": live.plan_id,
            "interval": "month",
            "billing_anchor_0": start.date().isoformat(),
            "billing_anchor_1": "00:00:00",
            "current_period_start_0": start.date().isoformat(),
            "current_period_start_1": "00:00:00",
            "current_period_end_0": (start + timedelta(days=30)).date().isoformat(),
            "current_period_end_1": "00:00:00",
            "started_at_0": start.date().isoformat(),
            "started_at_1": "00:00:00",
            "full_agents": 0,
            "light_agents": 0,
            "commitment_units": 0,
            "ai_at_limit": "keep",
            "addons-TOTAL_FORMS": 0,
            "addons-INITIAL_FORMS": 0,
            "scheduled_changes-TOTAL_FORMS": 0,
            "scheduled_changes-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert b"already has" in response.content
    assert Subscription.objects.filter(account=account).count() == 1


@pytest.mark.parametrize(
    "path",
    [
        "/admin/accounts/account/",
        "/admin/accounts/partner/",
        "/admin/accounts/membership/",
        "/admin/accounts/store/",
        "/admin/accounts/integration/",
        "/admin/accounts/apikey/",
        "/admin/plans/plan/",
        "/admin/plans/addon/",
        "/admin/plans/addontier/",
        "/admin/plans/edition/",
        "/admin/plans/price/",
        "/admin/plans/allowance/",
        "/admin/plans/subscription/",
        "/admin/plans/scheduledchange/",
        "/admin/metering/event/",
        "/admin/metering/charge/",
        "/admin/metering/ticketmerge/",
        "/admin/metering/reevaluation/",
        "/admin/metering/entitlement/",
        "/admin/billing/invoice/",
        "/admin/billing/usageclose/",
        "/admin/billing/thresholdnotice/",
        "/admin/billing/invoicecounter/",
    ],
)
def test_admin_lists_open_with_search(operator_client, account, path):
    response = operator_client.get(path, {"q": "basic"})
    assert response.status_code == 200
