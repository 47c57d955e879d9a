"""The stock admin cannot corrupt billing: money formatted, records read-only and undeletable,
subscription terms changed only through the change service, the console one click away."""

import pytest
from django.contrib import admin

from audit.models import AuditEntry
from billing.models import (
    Dunning,
    Invoice,
    InvoiceLine,
    PaymentAttempt,
    PaymentMethod,
    StripeEvent,
)
from metering.models import Charge, Entitlement, Event
from plans.models import Plan, Subscription

pytestmark = pytest.mark.django_db
RECORDS = [Invoice, PaymentAttempt, StripeEvent, Charge, Event, AuditEntry, Dunning, Entitlement]


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123"))
    return client


def test_billing_records_are_registered_read_only_and_undeletable(rf, django_user_model):
    request = rf.get("/admin/")
    request.user = django_user_model(is_superuser=True, is_staff=True, is_active=True)
    for model in [*RECORDS, PaymentMethod]:
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model
    assert InvoiceLine not in admin.site._registry  # shown inline on its invoice, read-only


def test_money_is_formatted_and_the_invoice_list_links_the_console(superuser_client, past_due):
    page = superuser_client.get("/admin/billing/invoice/").content.decode()
    assert "$60.00" in page and ">6000<" not in page
    assert f"/console/invoices/{past_due.pk}/" in page
    attempt = past_due.attempts.get()
    page = superuser_client.get("/admin/billing/paymentattempt/").content.decode()
    assert "$60.00" in page and attempt.failure_code in page
    assert superuser_client.post(f"/admin/billing/invoice/{past_due.pk}/delete/").status_code == 403
    assert Invoice.objects.filter(pk=past_due.pk).exists()


def test_the_subscription_plan_and_interval_cannot_be_edited(superuser_client, account):
    subscription = Subscription.objects.get(account=account)
    form = superuser_client.get(f"/admin/plans/subscription/{subscription.pk}/change/")
    fields = form.context["adminform"].form.fields
    assert not {"plan", "interval", "edition", "status"} & set(fields)
    pro = Plan.objects.get(code="pro")
    superuser_client.post(
        f"/admin/plans/subscription/{subscription.pk}/change/",
        {"plan": pro.pk, "interval": "year", "full_agents": 0, "light_agents": 0},
    )
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.interval) == ("basic", "month")


def test_the_admin_links_to_the_console(superuser_client):
    assert 'href="/console/">Billing console' in superuser_client.get("/admin/").content.decode()


def test_lifting_a_pause_in_the_admin_is_audited(superuser_client, account):
    from django.utils import timezone

    row = Entitlement.objects.create(
        account=account, feature="ai_agents", state="paused", until=timezone.now(), reason="Z9"
    )
    superuser_client.post(
        "/admin/metering/entitlement/",
        {"action": "lift_pause", "_selected_action": [row.pk]},
    )
    row.refresh_from_db()
    assert row.state == "active"
    entry = AuditEntry.objects.get(action="entitlement.state")
    assert (entry.source, entry.actor, entry.before, entry.after) == (
        "operator",
        "root",
        "paused",
        "active",
    )
