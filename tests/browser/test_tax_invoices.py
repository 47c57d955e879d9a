"""Tax in a real browser (issue 25): a merchant in Germany enters a VAT id on the billing
details page; VIES (its stand-in) confirms it, refuses it, or cannot be reached; the next
invoice, read on the Invoices tab, is reverse charged or carries German VAT and says why.

The seller is the demo's (France, OSS). Dates come from the clock at the start of each test.
With SCREENSHOTS=<folder> set, the invoices are saved (the README's pictures)."""

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, Membership
from billing import invoicing
from plans import pricing
from tests.billing.test_invoice_tax import fee
from tests.browser.test_billing_page import shoot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("eu_seller"),
]

CONFIRMED_BY_VIES = "DE123456788"  # the stand-in knows it, registered to a GmbH
UNKNOWN_TO_VIES = "DE811569869"  # right check digits, not registered at the stand-in


@pytest.fixture
def berlin_shop(make_account, django_user_model):
    """A shop on Basic in EUR, opened 10 days ago, its billing details not given yet."""
    with time_machine.travel(timezone.now() - timedelta(days=10), tick=False):
        account = make_account(slug="berlin", currency="EUR", company="Berlin Support GmbH")
    user = django_user_model.objects.create_user("owner@berlin.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def details_entered(page, live_server, vat_id: str) -> None:
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@berlin.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Billing & Usage").click()
    page.get_by_role("link", name="Billing details").click()
    # The fields by id: their accessible names carry their help texts.
    page.locator("#id_address_line1").fill("Beispielstrasse 1")
    page.locator("#id_postal_code").fill("10115")
    page.locator("#id_city").fill("Berlin")
    page.locator("#id_country").fill("DE")
    page.locator("#id_vat_id").fill(vat_id)
    page.get_by_role("button", name="Save billing details").click()
    page.get_by_text("Billing details saved").wait_for()


def invoice_issued(account: Account, amount_minor: int = 10000):
    """The shop's next invoice, as a close would issue it now (one fee line)."""
    at = timezone.now()
    with transaction.atomic():
        return invoicing.invoice_issue(
            subscription=None,
            account_id=account.pk,
            currency="EUR",
            reason="period_close",
            period=pricing.Period(start=at, end=at + timedelta(days=30)),
            lines=[fee(amount_minor, at)],
            at=at,
        )


def invoices_tab(page, invoice):
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Invoices"
    ).click()
    detail = page.locator(f"#invoice-{invoice.pk}-tax")
    detail.wait_for()
    return detail


def test_a_vat_id_vies_confirms_makes_the_next_invoice_reverse_charged(
    berlin_shop, live_server, page, vies_standin
):
    details_entered(page, live_server, CONFIRMED_BY_VIES)
    page.get_by_text("Confirmed by VIES").wait_for()
    berlin_shop.refresh_from_db()
    assert berlin_shop.tax_id_status == "valid" and berlin_shop.tax_id_consultation
    invoice = invoice_issued(berlin_shop)
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (10000, 0, 10000)
    detail = invoices_tab(page, invoice)
    text = detail.inner_text()
    assert "Article 196 of Directive 2006/112/EC" in text
    assert f"VAT id {CONFIRMED_BY_VIES}" in text and "VAT id FR11123456782" in text
    assert "Reverse charge" in text and "Total (incl. tax)" in text
    shoot(page, "tax-invoice-reverse-charge")


def test_a_vat_id_vies_refuses_leaves_german_vat_on_the_invoice(
    berlin_shop, live_server, page, vies_standin
):
    details_entered(page, live_server, UNKNOWN_TO_VIES)
    page.get_by_text("VIES says this VAT id is not valid").wait_for()
    invoice = invoice_issued(berlin_shop)
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (
        10000,
        1900,
        11900,
    )
    text = invoices_tab(page, invoice).inner_text()
    assert "VAT DE 19 %" in text and "€19.00" in text and "€119.00" in text
    assert "Article 196" not in text
    shoot(page, "tax-invoice-vat")


def test_vies_down_charges_vat_and_says_a_credit_note_follows(
    berlin_shop, live_server, page, vies_standin
):
    vies_standin.mode("down", times=50)
    details_entered(page, live_server, CONFIRMED_BY_VIES)
    page.get_by_text("VIES could not be reached").wait_for()
    invoice = invoice_issued(berlin_shop)
    assert invoice.tax_minor == 1900 and invoice.vat_id_unconfirmed
    text = invoices_tab(page, invoice).inner_text()
    assert "VAT DE 19 %" in text
    assert "had not confirmed VAT id DE123456788" in text and "a credit note follows" in text
