"""Starting again announces what is charged: the first cycle's fee less the account's credit,
which the first invoice takes off (the statement of account). Times are fixed."""

from datetime import UTC, datetime

import time_machine
from django.test import Client

from billing import invoicing, restart
from billing.models import Invoice
from tests.billing.pages_fixtures import T0, account  # noqa: F401
from tests.billing.test_start_again import ended  # noqa: F401

BACK = datetime(2026, 12, 4, 9, tzinfo=UTC)


def test_starting_again_announces_the_fee_less_the_account_credit(ended, owner):  # noqa: F811
    paid = Invoice.objects.filter(account=ended, kind="invoice").order_by("issued_at").first()
    if paid.status != "paid":
        invoicing.invoice_settle(invoice=paid, reason="paid out of band: test", at=T0)
    invoicing.credit_note_issue(invoice=paid, amount_minor=500, description="Sorry")
    with time_machine.travel(BACK, tick=False):
        preview = restart.subscription_restart_preview(
            account=ended, plan_code="basic", interval="month"
        )
        assert (preview.fee_minor, preview.credit_minor, preview.charged_now_minor) == (
            6000,
            500,
            5500,
        )
        client = Client()
        client.force_login(owner)
        page = client.get("/billing/shop/start/?plan=basic&interval=month").content.decode()
        assert "Your account credit" in page and "-$5.00" in page
        assert 'Charged now</td><td class="num"><strong>$55.00</strong>' in page
        started = restart.subscription_restart(account=ended, plan_code="basic", interval="month")
    assert started.invoice.total_minor == 5500 == preview.charged_now_minor
