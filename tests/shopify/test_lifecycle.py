"""An app subscription's life at Shopify, mapped onto ours (docs/shopify.md, decisions 2, 5, 6):
approval starts our 30-day subscription (never the redirect alone), each Shopify status has its
meaning here, upgrades apply at once without our proration invoice (P6), downgrades at the
cycle's end (P7), annual and editions are refused, and uninstalling ends it as a cancel would."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import TestCase

from accounts.errors import DomainError
from accounts.models import Membership
from billing import actions, shopify_billing
from billing.changes import ChangeRequest
from billing.models import Invoice, InvoiceReason, ShopifyStatus, ShopifySubscription
from billing.run import run_billing
from plans import periods
from plans.models import ScheduledChange, Subscription

from .flows import (
    active_account,
    approve_and_deliver,
    deliver,
    newest,
    number,
    open_account,
    sent,
    shop_domain,
)


@pytest.fixture
def stand_in(shopify_standin, catalog):
    return shopify_standin


def ours(account) -> Subscription | None:
    return Subscription.objects.filter(account=account, ended_at__isnull=True).first()


def test_approval_at_shopify_starts_our_30_day_subscription_on_shopifys_interval(stand_in):
    with TestCase.captureOnCommitCallbacks(execute=True):
        account = open_account(stand_in)
    row = newest(account)
    assert row.status == ShopifyStatus.PENDING and ours(account) is None
    # The merchant is emailed Shopify's approval page.
    (email,) = mail.outbox
    assert email.subject == "Approve your subscription in Shopify"
    assert row.confirmation_url in email.body and "every 30 days" in email.body
    approve_and_deliver(stand_in, row)
    row.refresh_from_db()
    subscription = ours(account)
    assert row.status == ShopifyStatus.ACTIVE and row.subscription == subscription
    assert subscription is not None and subscription.interval == periods.DAYS_30
    assert not subscription.is_migrated
    at_shopify = stand_in.subscription(number(row))
    # Our periods ARE Shopify's intervals: anchored 30 days before its currentPeriodEnd.
    assert subscription.current_period_end == row.current_period_end
    assert subscription.billing_anchor == row.current_period_end - timedelta(days=30)
    assert at_shopify["status"] == "ACTIVE"
    # P1: the start invoice lists the 30-day fee Shopify's recurring charge bills.
    start = Invoice.objects.get(subscription=subscription, reason=InvoiceReason.SUBSCRIPTION_START)
    assert start.total_minor == row.recurring_amount_minor > 0


def test_the_return_redirect_alone_starts_nothing(stand_in, client, django_user_model):
    account = open_account(stand_in)
    row = newest(account)
    user = django_user_model.objects.create_user("owner", "owner@bloom.example", "pw-long-enough")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    client.force_login(user)
    # Someone opens the return URL with the charge id without approving: Shopify says PENDING.
    answer = client.get(f"/billing/bloom/shopify/return/?charge_id={number(row)}", follow=True)
    assert answer.status_code == 200
    assert "has not approved the subscription yet" in answer.content.decode()
    assert ours(account) is None and newest(account).status == ShopifyStatus.PENDING
    # The merchant approves; the return page asks Shopify and starts ours (no webhook needed).
    back = stand_in.approve(row.confirmation_url)
    assert back.startswith("http") and "/billing/bloom/shopify/return/" in back
    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = client.get(back[back.index("/billing/") :], follow=True)
    assert "approved your subscription: it is active" in answer.content.decode()
    assert ours(account) is not None and ours(account).interval == periods.DAYS_30


def test_back_after_shopifys_webhook_activated_it_the_page_still_says_approved(
    stand_in, client, django_user_model
):
    """Shopify's webhook often reaches us before the merchant's browser does: the return page
    then finds the subscription active already, and says what the merchant just did."""
    account = open_account(stand_in)
    row = newest(account)
    user = django_user_model.objects.create_user("owner", "owner@bloom.example", "pw-long-enough")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    client.force_login(user)
    before = sent(stand_in)
    back = stand_in.approve(row.confirmation_url)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert deliver(stand_in, after=before) == [200]
    assert newest(account).status == ShopifyStatus.ACTIVE and ours(account) is not None
    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = client.get(back[back.index("/billing/") :], follow=True)
    assert "Shopify approved your subscription: it is active." in answer.content.decode()


def test_declined_maps_to_declined_with_an_email_and_nothing_of_ours(stand_in):
    account = open_account(stand_in)
    row = newest(account)
    mail.outbox.clear()
    before = sent(stand_in)
    stand_in.decline(row.confirmation_url)
    assert deliver(stand_in, after=before) == [200]
    row.refresh_from_db()
    assert row.status == ShopifyStatus.DECLINED and row.ended_at is not None
    assert ours(account) is None
    assert [m.subject for m in mail.outbox] == ["Your subscription was declined in Shopify"]


def test_not_approved_in_two_days_maps_to_expired(stand_in):
    account = open_account(stand_in)
    row = newest(account)
    stand_in.clock(advance_days=2.1)
    row = shopify_billing.shopify_return(account=account, charge_id=str(number(row)))
    assert row is not None and row.status == ShopifyStatus.EXPIRED
    assert ours(account) is None


def test_frozen_makes_ours_past_due_and_active_again_when_shopify_reactivates(stand_in):
    account = active_account(stand_in)
    row = newest(account)
    mail.outbox.clear()
    before = sent(stand_in)
    stand_in.set_status(number(row), "FROZEN")
    deliver(stand_in, after=before)
    subscription = ours(account)
    assert subscription.status == Subscription.Status.PAST_DUE
    change = subscription.status_changes.latest("at", "pk")
    assert change.reason == "Shopify froze the app subscription (unpaid Shopify bill)"
    assert [m.subject for m in mail.outbox] == [
        "Shopify froze your app subscription: your Shopify bill is unpaid"
    ]
    before = sent(stand_in)
    stand_in.set_status(number(row), "ACTIVE")
    deliver(stand_in, after=before)
    assert ours(account).status == Subscription.Status.ACTIVE
    assert newest(account).status == ShopifyStatus.ACTIVE


def test_cancelled_at_shopify_ends_ours_at_the_end_of_its_cycle(stand_in):
    account = active_account(stand_in)
    row = newest(account)
    before = sent(stand_in)
    stand_in.set_status(number(row), "CANCELLED")
    deliver(stand_in, after=before)
    subscription = ours(account)
    assert newest(account).status == ShopifyStatus.CANCELLED
    end = subscription.scheduled_changes.get(cancel=True, status=ScheduledChange.Status.SCHEDULED)
    assert end.effective_at == subscription.current_period_end


def test_P6_an_upgrade_replaces_at_once_without_our_proration_invoice(stand_in):
    account = active_account(stand_in, plan="basic")
    old = newest(account)
    interval_end = old.current_period_end
    row = shopify_billing.shopify_change(account=account, request=ChangeRequest(plan="pro"))
    assert row.replacement_behavior == "APPLY_IMMEDIATELY" and row.replaces == old
    assert row.status == ShopifyStatus.PENDING and row.name == "Pro plan"
    assert ours(account).plan.code == "basic"  # nothing before the merchant approves
    approve_and_deliver(stand_in, row)
    row.refresh_from_db()
    old.refresh_from_db()
    subscription = ours(account)
    assert row.status == ShopifyStatus.ACTIVE and old.status == ShopifyStatus.CANCELLED
    assert subscription.plan.code == "pro" and row.subscription == subscription
    # Shopify prorates the replacement: no upgrade invoice of ours, and the interval is kept.
    assert not Invoice.objects.filter(account=account, reason=InvoiceReason.UPGRADE).exists()
    assert row.current_period_end == interval_end
    # The old one's cancellation was a replacement: nothing of ours ends.
    assert not subscription.scheduled_changes.filter(cancel=True).exists()


def test_P7_a_downgrade_is_scheduled_for_the_cycles_end_once_approved(stand_in):
    account = active_account(stand_in, plan="pro")
    old = newest(account)
    row = shopify_billing.shopify_change(account=account, request=ChangeRequest(plan="basic"))
    assert row.replacement_behavior == "APPLY_ON_NEXT_BILLING_CYCLE"
    subscription = ours(account)
    assert not subscription.scheduled_changes.exists()
    approve_and_deliver(stand_in, row)
    row.refresh_from_db()
    assert row.status == ShopifyStatus.ACCEPTED
    scheduled = subscription.scheduled_changes.get(status=ScheduledChange.Status.SCHEDULED)
    assert scheduled.plan.code == "basic"
    assert scheduled.effective_at == subscription.current_period_end == old.current_period_end
    subscription.refresh_from_db()
    assert subscription.plan.code == "pro"  # until the cycle's end


def test_annual_and_editions_are_refused_on_this_channel_in_plain_words(stand_in):
    account = active_account(stand_in)
    with pytest.raises(DomainError, match="Annual billing is not available when you pay"):
        shopify_billing.shopify_change(account=account, request=ChangeRequest(interval="year"))
    other = open_account(stand_in, slug="other")
    ShopifySubscription.objects.filter(account=other).update(status=ShopifyStatus.DECLINED)
    with pytest.raises(DomainError, match="not available when you pay through Shopify"):
        shopify_billing.shopify_subscribe(account=other, plan_code="professional")


def test_uninstall_cancels_at_shopify_and_ends_ours_as_a_cancel_would(stand_in):
    account = active_account(stand_in)
    before = sent(stand_in)
    stand_in.uninstall(shop_domain("bloom"))
    assert deliver(stand_in, topic="app/uninstalled", after=before) == [200]
    account.shopify_shop.refresh_from_db()
    assert account.shopify_shop.uninstalled_at is not None
    assert newest(account).status == ShopifyStatus.CANCELLED
    subscription = ours(account)
    end = subscription.scheduled_changes.get(cancel=True, status=ScheduledChange.Status.SCHEDULED)
    assert end.effective_at == subscription.current_period_end


def test_a_cancel_ends_ours_at_the_cycles_end_then_shopify_stops_billing(stand_in):
    account = active_account(stand_in)
    row = newest(account)
    subscription = ours(account)
    actions.subscription_cancel(account=account)
    # Shopify keeps billing until our last period is closed and its statement settled.
    assert stand_in.subscription(number(row))["status"] == "ACTIVE"
    after_end = subscription.current_period_end + timedelta(minutes=5)
    stand_in.clock(now=after_end)
    with time_machine.travel(after_end, tick=False):
        run = run_billing(as_of=after_end)
    subscription.refresh_from_db()
    assert subscription.ended_at == subscription.current_period_end
    final = Invoice.objects.filter(subscription=subscription).latest("issued_at", "pk")
    assert final.status == "paid"  # its usage statement: billed through Shopify
    assert run.shopify_ended == 1
    assert stand_in.subscription(number(row))["status"] == "CANCELLED"
    assert newest(account).status == ShopifyStatus.CANCELLED
