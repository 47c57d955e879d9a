"""`manage.py shopify_reconcile` (issue 24, item 5): our records against Shopify's, per account:
the app subscription's figures (mirrored when Shopify's differ; never money) and the usage
records by idempotency key (missing on either side or a different amount: exit code 1)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import shopify_gateway
from billing.models import InvoiceLine, ShopifyUsageRecord, UsageRecordStatus

from .flows import active_account, newest, number


@pytest.fixture
def stand_in(shopify_standin, catalog):
    return shopify_standin


def reconcile(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("shopify_reconcile", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def post_at_shopify(account, *, amount_minor: int, key: str):
    row = newest(account)
    return shopify_gateway.usage_record_create(
        shop=account.shopify_shop,
        line_gid=row.usage_line_gid,
        amount_minor=amount_minor,
        currency="USD",
        description="Helpdesk tickets over the allowance",
        idempotency_key=key,
    )


def ours_posted(account, *, amount_minor: int, key: str, gid: str = "") -> ShopifyUsageRecord:
    """A record of ours the usage path left posted (on the start invoice's line: any line
    does for the comparison)."""
    line = InvoiceLine.objects.filter(invoice__account=account).first()
    return ShopifyUsageRecord.objects.create(
        invoice=line.invoice,
        line=line,
        shopify_subscription=newest(account),
        idempotency_key=key,
        amount_minor=amount_minor,
        currency="USD",
        description="Helpdesk tickets over the allowance",
        status=UsageRecordStatus.POSTED,
        shopify_gid=gid,
        created_at=timezone.now(),
        posted_at=timezone.now(),
    )


def test_in_agreement_exits_0_and_mirrors_a_cap_changed_behind_our_back(stand_in):
    account = active_account(stand_in)
    record = post_at_shopify(account, amount_minor=12_500, key="usage:test:1")
    ours_posted(account, amount_minor=12_500, key="usage:test:1", gid=record.gid)
    stand_in.raise_cap(number(newest(account)), "20000.00")  # its webhook never reached us
    code, out = reconcile("--account", account.slug)
    assert code == 0, out
    assert "mirror updated from Shopify" in out and "0 money difference(s)." in out
    row = newest(account)
    assert row.capped_amount_minor == 2_000_000 and row.balance_used_minor == 12_500


def test_a_record_at_shopify_that_we_do_not_have_is_a_money_difference(stand_in):
    account = active_account(stand_in)
    post_at_shopify(account, amount_minor=4_000, key="usage:stray:1")
    code, out = reconcile()
    assert code == 1
    assert "MONEY" in out and "usage:stray:1" in out and "not ours" in out
    assert ShopifyUsageRecord.objects.count() == 0  # reported, never created or deleted


def test_a_record_posted_here_but_missing_at_shopify_is_a_money_difference(stand_in):
    account = active_account(stand_in)
    ours_posted(account, amount_minor=8_000, key="usage:lost:1")
    code, out = reconcile("--account", account.slug)
    assert code == 1 and "usage:lost:1" in out and "missing at Shopify" in out


def test_a_different_amount_is_a_money_difference(stand_in):
    account = active_account(stand_in)
    record = post_at_shopify(account, amount_minor=5_000, key="usage:amount:1")
    ours_posted(account, amount_minor=5_100, key="usage:amount:1", gid=record.gid)
    code, out = reconcile("--account", account.slug)
    assert code == 1 and "$51.00 here, $50.00 at Shopify" in out
