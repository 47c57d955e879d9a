"""Usage billed through Shopify (docs/shopify.md, decisions 3 and 4): an invoice's usage lines
posted as usage records on the stand-in, within the approved cap; what does not fit is held
(P8 on this channel), the merchant is asked to approve a higher cap, and the held part is posted
once it is approved. Amounts are in cents; the stand-in is Shopify."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict
from accounts.models import Membership, ShopifyShop
from billing import actions, invoicing, payments, run, shopify_billing, shopify_usage
from billing.models import (
    Dunning,
    Invoice,
    InvoiceStatusChange,
    ShopifySubscription,
    ShopifyUsageRecord,
)
from plans import pricing
from plans import services as plan_services
from plans.models import Subscription

pytestmark = pytest.mark.django_db

TOKEN = "shpat_usage_0123456789"
CAP = 50_000  # $500.00 per 30 days, this shop's own approved cap


def shopify_account(stand_in, slug: str = "bloom", *, approve: bool = True, cap: int = CAP):
    """An account paying through its shop, its app subscription approved at Shopify (or left
    waiting), and an owner who manages billing."""
    from django.contrib.auth import get_user_model

    domain = f"{slug}.myshopify.com"
    stand_in.shop(domain, TOKEN, "USD")
    account = plan_services.account_open(
        slug=slug,
        name=f"{slug.title()} Store",
        billing_email=f"billing@{slug}.example",
        currency="USD",
        plan_code="basic",
        interval="30d",
        addons=[],
        billing_channel="shopify",
        shop_domain=domain,
        access_token=TOKEN,
    )
    ShopifyShop.objects.filter(account=account).update(capped_amount_minor=cap)
    email = f"owner@{slug}.example"
    user = get_user_model().objects.create_user(email, email=email, password="pw-owner-1")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    row = shopify_billing.shopify_subscribe(account=account, plan_code="basic")
    if approve:
        stand_in.approve(row.confirmation_url)
        shopify_billing.shopify_refresh(shopify_subscription=row)
    return account


def app_subscription(account) -> ShopifySubscription:
    return ShopifySubscription.objects.filter(account=account).latest("created_at", "pk")


def number(row: ShopifySubscription) -> int:
    return int(row.gid.rsplit("/", 1)[1])


def line(kind: str, description: str, quantity: int, unit_minor: int, start, end):
    return pricing.Line(
        kind=kind,
        description=description,
        meter=None if kind == "plan_fee" else "helpdesk_tickets",
        quantity=quantity,
        unit_price_minor=Decimal(unit_minor),
        amount_minor=quantity * unit_minor,
        rules=("P1",) if kind == "plan_fee" else ("P3",),
        period_start=start,
        period_end=end,
    )


def usage_statement(account, *usage, fee_minor: int = 6_000, days_back: int = 0) -> Invoice:
    """The close invoice of the account's last 30 days: the fee line (billed by Shopify's
    recurring charge) and these usage lines (kind, quantity, unit price in cents)."""
    end = timezone.now() - timedelta(days=days_back)
    start = end - timedelta(days=30)
    lines = [line("plan_fee", "Basic plan, 30 days", 1, fee_minor, start, end)] if fee_minor else []
    for kind, quantity, unit in usage:
        words = (
            f"Billable tickets over your allowance: {quantity:,} tickets"
            if kind == "overage"
            else f"Late usage: {quantity:,} tickets after invoicing"
        )
        lines.append(line(kind, words, quantity, unit, start, end))
    with transaction.atomic():  # as every issuing path does (the number counter is locked)
        return invoicing.invoice_issue(
            subscription=Subscription.objects.filter(account=account).first(),
            account_id=account.pk,
            currency="USD",
            reason="upgrade",
            period=pricing.Period(start=start, end=end),
            lines=lines,
            at=timezone.now(),
        )


def records(invoice) -> list[tuple[int, int, str]]:
    """Our records of an invoice: (part, cents, status), in line order."""
    return list(
        ShopifyUsageRecord.objects.filter(invoice=invoice)
        .order_by("line__position", "part")
        .values_list("part", "amount_minor", "status")
    )


def at_shopify(stand_in) -> dict[str, str]:
    """Shopify's usage records: idempotency key → price."""
    return {r["idempotency_key"]: r["price"] for r in stand_in.state()["usage_records"]}


def balance_used(stand_in, row: ShopifySubscription) -> Decimal:
    usage = next(x for x in stand_in.subscription(number(row))["lines"] if x["kind"] == "usage")
    return Decimal(usage["balance_used"])


def collect(invoice, capture) -> None:
    with capture(execute=True):
        payments.invoice_collect(invoice_id=invoice.pk)
    invoice.refresh_from_db()


# --- within the cap ---------------------------------------------------------------------------


def test_P8_usage_within_the_cap_is_one_record_per_line_and_the_invoice_is_paid(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 300, 100), ("late_usage", 15, 100))
    assert invoice.id in payments.collectable_invoice_ids()  # no card: the channel collects

    collect(invoice, django_capture_on_commit_callbacks)

    assert records(invoice) == [(1, 30_000, "posted"), (1, 1_500, "posted")]
    posted = ShopifyUsageRecord.objects.filter(invoice=invoice).order_by("line__position")
    assert at_shopify(shopify_standin) == {
        posted[0].idempotency_key: "300.00",
        posted[1].idempotency_key: "15.00",
    }
    assert posted[0].idempotency_key == f"usage:{invoice.number}:line:{posted[0].line_id}:part:1"
    assert posted[0].description.startswith("Billable tickets over your allowance: 300 tickets")
    assert all(r.shopify_gid.startswith("gid://shopify/AppUsageRecord/") for r in posted)
    assert invoice.status == "paid"
    change = InvoiceStatusChange.objects.filter(invoice=invoice).last()
    assert change.to_status == "paid" and change.reason == "billed through Shopify"
    # The fee is Shopify's recurring charge: only the usage counts in the interval's balance.
    assert balance_used(shopify_standin, app_subscription(account)) == Decimal("315.00")
    assert shopify_usage.held_minor(account) == 0


def test_P8_an_invoice_of_fees_alone_is_paid_at_once_without_a_usage_record(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account)
    collect(invoice, django_capture_on_commit_callbacks)
    assert invoice.status == "paid" and records(invoice) == []
    assert at_shopify(shopify_standin) == {}


# --- over the cap -------------------------------------------------------------------------------


def test_P8_over_the_cap_posts_what_fits_holds_the_rest_and_posts_it_once_a_raise_is_approved(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 800, 100))  # $800.00 against a $500.00 cap

    collect(invoice, django_capture_on_commit_callbacks)

    assert records(invoice) == [(1, 50_000, "posted"), (2, 30_000, "held")]
    assert list(at_shopify(shopify_standin).values()) == ["500.00"]
    assert invoice.status == "open"
    held = Dunning.objects.get(invoice=invoice).held_reason
    assert "$300.00 of usage is held" in held and "$500.00" in held
    assert shopify_usage.held_minor(account) == 30_000
    assert invoice.pk not in payments.collectable_invoice_ids()  # held: the sweep leaves it
    # A higher cap was asked for: the held $300.00 on top of $500.00, up to a whole $1,000.
    row = app_subscription(account)
    assert row.cap_requested_minor == 100_000 and row.cap_confirmation_url
    usage = next(
        x for x in shopify_standin.subscription(number(row))["lines"] if x["kind"] == "usage"
    )
    assert usage["pending_cap"] == "1000.00"
    [email] = [m for m in mail.outbox if "higher usage cap" in m.subject]
    assert set(email.to) == {f"billing@{account.slug}.example", f"owner@{account.slug}.example"}
    assert row.cap_confirmation_url in email.body and "$300.00" in email.body

    shopify_standin.approve(row.cap_confirmation_url)  # the merchant approves at Shopify
    with django_capture_on_commit_callbacks(execute=True):
        shopify_billing.shopify_refresh(shopify_subscription=row)  # Shopify says: cap raised

    invoice.refresh_from_db()
    assert records(invoice) == [(1, 50_000, "posted"), (2, 30_000, "posted")]
    assert sorted(at_shopify(shopify_standin).values()) == ["300.00", "500.00"]
    assert balance_used(shopify_standin, row) == Decimal("800.00")
    assert invoice.status == "paid" and not Dunning.objects.filter(invoice=invoice).exists()
    assert shopify_usage.held_minor(account) == 0


def test_P8_with_no_room_left_the_whole_usage_is_held(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    first = usage_statement(account, ("overage", 500, 100), days_back=1)
    collect(first, django_capture_on_commit_callbacks)
    assert first.status == "paid"  # exactly the cap: $500.00 of $500.00

    second = usage_statement(account, ("overage", 120, 100), ("late_usage", 30, 100))
    collect(second, django_capture_on_commit_callbacks)

    assert records(second) == [(1, 12_000, "held"), (1, 3_000, "held")]
    assert list(at_shopify(shopify_standin).values()) == ["500.00"]  # nothing more sent
    assert second.status == "open"
    assert "$150.00 of usage is held" in Dunning.objects.get(invoice=second).held_reason
    assert app_subscription(account).cap_requested_minor == 100_000


def test_P8_a_rerun_posts_nothing_twice(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 700, 100))
    collect(invoice, django_capture_on_commit_callbacks)
    before = (records(invoice), at_shopify(shopify_standin), len(mail.outbox))

    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            run.collect_due()
            shopify_usage.invoice_post(invoice_id=invoice.pk)
            shopify_usage.held_post(account_id=account.pk)

    invoice.refresh_from_db()
    assert (records(invoice), at_shopify(shopify_standin), len(mail.outbox)) == before
    assert records(invoice) == [(1, 50_000, "posted"), (2, 20_000, "held")]
    assert invoice.status == "open"


def test_P8_retry_by_a_person_goes_through_the_same_path_and_posts_after_a_raise_in_shopify(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 650, 100))
    collect(invoice, django_capture_on_commit_callbacks)
    assert records(invoice) == [(1, 50_000, "posted"), (2, 15_000, "held")]
    # The merchant raises the cap in Shopify's own settings; its webhook has not arrived.
    shopify_standin.raise_cap(number(app_subscription(account)), "700.00")

    with django_capture_on_commit_callbacks(execute=True):
        payment = actions.invoice_pay(account=account, invoice=invoice, trigger="retry")

    invoice.refresh_from_db()
    assert payment.attempt is None  # no card payment on this channel
    assert records(invoice) == [(1, 50_000, "posted"), (2, 15_000, "posted")]
    assert invoice.status == "paid"
    assert sorted(at_shopify(shopify_standin).values()) == ["150.00", "500.00"]


def test_P8_a_cap_too_small_after_a_raise_splits_the_held_part_again(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 900, 100))
    collect(invoice, django_capture_on_commit_callbacks)
    shopify_standin.raise_cap(number(app_subscription(account)), "600.00")

    with django_capture_on_commit_callbacks(execute=True):
        assert shopify_usage.held_post(account_id=account.pk) == 1

    assert records(invoice) == [(1, 50_000, "posted"), (2, 10_000, "posted"), (3, 30_000, "held")]
    assert "$300.00 of usage is held" in Dunning.objects.get(invoice=invoice).held_reason
    assert shopify_usage.held_minor(account) == 30_000


# --- no live subscription -------------------------------------------------------------------


def test_P8_without_an_active_app_subscription_usage_is_held_with_the_reason(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin, approve=False)  # waiting for the merchant
    invoice = usage_statement(account, ("overage", 40, 100), fee_minor=0)

    collect(invoice, django_capture_on_commit_callbacks)

    assert records(invoice) == [(1, 4_000, "held")]
    assert at_shopify(shopify_standin) == {}
    reason = Dunning.objects.get(invoice=invoice).held_reason
    assert reason.startswith(
        "$40.00 of usage is held: the Shopify app subscription is not approved"
    )
    [email] = [m for m in mail.outbox if "cannot go to Shopify yet" in m.subject]
    assert reason in email.body

    row = app_subscription(account)
    shopify_standin.approve(row.confirmation_url)
    shopify_billing.shopify_refresh(shopify_subscription=row)
    with django_capture_on_commit_callbacks(execute=True):
        run.collect_due()  # the sweep posts held usage once Shopify has room for it

    invoice.refresh_from_db()
    assert records(invoice) == [(1, 4_000, "posted")] and invoice.status == "paid"
    assert list(at_shopify(shopify_standin).values()) == ["40.00"]


def test_P8_a_frozen_subscription_holds_usage_until_shopify_activates_it_again(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    row = app_subscription(account)
    shopify_standin.set_status(number(row), "FROZEN")
    shopify_billing.shopify_refresh(shopify_subscription=row)
    invoice = usage_statement(account, ("overage", 25, 100))

    collect(invoice, django_capture_on_commit_callbacks)

    assert records(invoice) == [(1, 2_500, "held")]
    assert "Shopify froze the app subscription" in Dunning.objects.get(invoice=invoice).held_reason
    shopify_standin.set_status(number(row), "ACTIVE")
    shopify_billing.shopify_refresh(shopify_subscription=row)
    with django_capture_on_commit_callbacks(execute=True):
        run.collect_due()
    invoice.refresh_from_db()
    assert records(invoice) == [(1, 2_500, "posted")] and invoice.status == "paid"


# --- lost answers ---------------------------------------------------------------------------


def test_a_lost_answer_is_found_at_shopify_by_its_key_and_never_sent_as_a_second_record(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    import time_machine

    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 120, 100))
    shopify_standin.fault("lose_answer", operation="appUsageRecordCreate")
    collect(invoice, django_capture_on_commit_callbacks)
    assert records(invoice) == [(1, 12_000, "unknown")] and invoice.status == "open"
    assert invoice.pk not in payments.collectable_invoice_ids()  # in flight: not sent again
    assert shopify_usage.usage_records_reconcile(as_of=timezone.now()) == 0  # too early

    later = timezone.now() + shopify_usage.IN_FLIGHT_TIMEOUT + timedelta(seconds=1)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert shopify_usage.usage_records_reconcile(as_of=later) == 1

    invoice.refresh_from_db()
    assert records(invoice) == [(1, 12_000, "posted")] and invoice.status == "paid"
    assert list(at_shopify(shopify_standin).values()) == ["120.00"]


def test_a_refused_record_is_held_for_an_operator_and_sent_again_on_a_persons_retry(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 10, 100))
    # Shopify refuses a price in another currency than the shop's: nothing is recorded.
    Invoice.objects.filter(pk=invoice.pk).update(currency="EUR")
    collect(invoice, django_capture_on_commit_callbacks)
    [record] = ShopifyUsageRecord.objects.filter(invoice=invoice)
    assert record.status == "failed" and record.error
    assert Dunning.objects.get(invoice=invoice).held_reason.startswith("Shopify refused €10.00")
    assert at_shopify(shopify_standin) == {}

    Invoice.objects.filter(pk=invoice.pk).update(currency="USD")
    ShopifyUsageRecord.objects.filter(pk=record.pk).update(currency="USD")
    with django_capture_on_commit_callbacks(execute=True):
        actions.invoice_pay(account=account, invoice=invoice, trigger="retry")
    invoice.refresh_from_db()
    assert records(invoice) == [(1, 1_000, "posted")] and invoice.status == "paid"


def test_P8_held_usage_is_posted_when_shopifys_30_day_interval_starts_again(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    import time_machine

    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 540, 100))
    collect(invoice, django_capture_on_commit_callbacks)
    assert records(invoice) == [(1, 50_000, "posted"), (2, 4_000, "held")]
    row = app_subscription(account)
    ends = row.current_period_end
    with django_capture_on_commit_callbacks(execute=True):
        run.collect_due()  # the cap is used up until the interval ends: nothing moves
    assert records(invoice)[1] == (2, 4_000, "held")

    # Shopify's next interval: balanceUsed starts again from $0.00 under the same cap.
    shopify_standin.clock(now=ends + timedelta(hours=1))
    with (
        time_machine.travel(ends + timedelta(hours=1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        run.collect_due()

    invoice.refresh_from_db()
    assert records(invoice) == [(1, 50_000, "posted"), (2, 4_000, "posted")]
    assert invoice.status == "paid"
    row.refresh_from_db()
    assert row.current_period_end > ends and row.balance_used_minor == 4_000


def test_P8_asking_for_a_higher_cap_again_offers_the_pending_link_or_asks_for_more(
    make_account, shopify_standin, django_capture_on_commit_callbacks
):
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 520, 100))
    collect(invoice, django_capture_on_commit_callbacks)
    row = app_subscription(account)
    pending, emails = row.cap_confirmation_url, len(mail.outbox)

    with django_capture_on_commit_callbacks(execute=True):
        again = shopify_usage.cap_raise_request(account=account)  # the page's button
    assert again == pending and len(mail.outbox) == emails  # the same request, no new email

    with django_capture_on_commit_callbacks(execute=True):
        more = shopify_usage.cap_raise_request(account=account, capped_minor=250_000)
    row.refresh_from_db()
    assert more != pending and row.cap_requested_minor == 250_000
    assert row.cap_confirmation_url == more and more in mail.outbox[-1].body
    with pytest.raises(Conflict, match="already"):
        shopify_usage.cap_raise_request(account=account, capped_minor=CAP)


def test_P8_back_from_approving_a_higher_cap_the_page_says_the_cap_not_the_subscription(
    make_account, shopify_standin, client, django_capture_on_commit_callbacks
):
    """Shopify sends the merchant to the same return address after a cap approval: the page
    names what was approved (the cap) and the held part is posted."""
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 800, 100))
    collect(invoice, django_capture_on_commit_callbacks)
    row = app_subscription(account)
    owner = account.memberships.get(role=Membership.Role.OWNER).user
    client.force_login(owner)

    back = shopify_standin.approve(row.cap_confirmation_url)
    with django_capture_on_commit_callbacks(execute=True):
        page = client.get(back[back.index("/billing/") :], follow=True).content.decode()

    assert "Shopify approved the higher cap: $1,000.00 per 30 days." in page
    assert "approved your subscription" not in page
    invoice.refresh_from_db()
    assert records(invoice) == [(1, 50_000, "posted"), (2, 30_000, "posted")]
    assert invoice.status == "paid"


def test_a_90_percent_webhook_during_a_post_does_not_count_the_record_twice(
    make_account, shopify_standin, monkeypatch, django_capture_on_commit_callbacks
):
    """Shopify's 90 % webhook carries the absolute balance, our record included; it can land
    while we wait for the post's answer. Our copy of the balance stays Shopify's figure."""
    account = shopify_account(shopify_standin)
    invoice = usage_statement(account, ("overage", 460, 100))  # $460.00 of a $500.00 cap
    row = app_subscription(account)
    real_post = shopify_usage.shopify_gateway.usage_record_create

    def post_then_webhook(**kwargs):
        created = real_post(**kwargs)
        # What the webhook handler stores: Shopify's balance after the record.
        ShopifySubscription.objects.filter(pk=row.pk).update(balance_used_minor=46_000)
        return created

    monkeypatch.setattr(shopify_usage.shopify_gateway, "usage_record_create", post_then_webhook)
    collect(invoice, django_capture_on_commit_callbacks)

    row.refresh_from_db()
    assert balance_used(shopify_standin, row) == Decimal("460.00")
    assert row.balance_used_minor == 46_000  # not $920.00
