"""The documents of a taxed invoice (issue 25, items 5 and 6; docs/tax.md): the PDF, the
invoices page, the partner API and its webhooks carry the parties frozen at issue, the
breakdown per rate, the totals with and without tax, and the legal mentions.

The seller is the demo's (FR, OSS, registered in WA). Exact cents; times are fixed."""

import re

import pytest
import time_machine
from django.core import mail

from accounts.models import Membership
from billing import invoicing, payments
from billing.models import AccountCredit, Invoice
from billing.pdf import render_invoice_pdf
from billing.selectors import invoice_document
from outbox import services as outbox_services
from outbox.models import Event
from tests.billing.test_invoice_tax import DE_VALID_VAT, FR_BUYER_VAT, buyer, issue
from tests.billing.test_payments import OK
from tests.billing.test_statement import DAY, T0, card, emails_sent, pdf_text

pytestmark = pytest.mark.usefixtures("eu_seller")


def text_of(invoice: Invoice) -> str:
    invoice.refresh_from_db()
    # One space between words: the PDF's columns come out as runs of spaces.
    return re.sub(r"\s+", " ", pdf_text(render_invoice_pdf(invoice_document(invoice=invoice))))


def french_buyer(make_account, slug="shop"):
    return buyer(
        make_account(slug=slug, currency="EUR"),
        company="Boutique Lumière SARL",
        address_line1="12 rue des Lilas",
        postal_code="69003",
        city="Lyon",
        country="FR",
        vat_id=FR_BUYER_VAT,
        tax_id_status="valid",
        tax_id_checked_at=T0 - DAY,
    )


def german_buyer(make_account, slug="shop"):
    return buyer(
        make_account(slug=slug, currency="EUR"),
        company="Beispiel GmbH",
        address_line1="Musterstraße 5",
        postal_code="10115",
        city="Berlin",
        country="DE",
        vat_id=DE_VALID_VAT,
        tax_id_status="valid",
        tax_id_checked_at=T0 - DAY,
    )


# --- The PDF ---------------------------------------------------------------------------------


def test_the_pdf_of_a_french_invoice_prints_both_parties_and_its_vat(make_account):
    text = text_of(issue(french_buyer(make_account), 4900, 1234))
    # The seller, as the settings name it, and the buyer, as its details stood at issue.
    assert "Helpdesk Billing SAS 1 rue de l'Exemple 75002 Paris France" in text
    assert "VAT id: FR11123456782" in text
    assert "Boutique Lumière SARL 12 rue des Lilas 69003 Lyon FR" in text
    assert f"VAT id: {FR_BUYER_VAT}" in text
    # 61.34 excl. tax, 20 % French VAT on it rounded once, 73.61 incl. tax.
    assert "Subtotal (excl. tax) €61.34" in text
    assert "VAT FR 20 % on €61.34 €12.27" in text
    assert "Total tax €12.27" in text
    assert "Total (incl. tax) €73.61" in text
    assert "Amount due €73.61" in text


def test_the_pdf_prints_the_parties_as_they_were_at_issue(make_account):
    account = french_buyer(make_account)
    invoice = issue(account, 4900)
    buyer(account, company="Renamed SAS", address_line1="1 avenue Nouvelle")
    text = text_of(invoice)
    assert "Boutique Lumière SARL 12 rue des Lilas" in text
    assert "Renamed" not in text and "avenue Nouvelle" not in text


def test_the_pdf_of_a_reverse_charged_invoice_says_article_196_and_both_vat_ids(make_account):
    text = text_of(issue(german_buyer(make_account), 4900, 1234))
    assert "VAT id: FR11123456782" in text and f"VAT id: {DE_VALID_VAT}" in text
    assert "Beispiel GmbH Musterstraße 5 10115 Berlin DE" in text
    assert "Reverse charge on €61.34 €0.00" in text
    assert "Total tax €0.00" in text
    assert "Total (incl. tax) €61.34" in text
    assert (
        "Reverse charge: VAT to be accounted for by the customer (Article 196 of Directive "
        "2006/112/EC)" in text
    )


def test_the_pdf_of_a_credit_note_gives_back_its_share_of_the_vat(make_account):
    invoice = issue(french_buyer(make_account), 4900, 1234)
    note = invoicing.credit_note_issue(invoice=invoice, amount_minor=3067, description="Outage")
    text = text_of(note)
    assert "Credit note" in text
    assert f"VAT id: {FR_BUYER_VAT}" in text and "VAT id: FR11123456782" in text
    assert "Subtotal (excl. tax) -€30.67" in text
    assert "VAT FR 20 % on -€30.67 -€6.13" in text
    assert "Total (incl. tax) -€36.80" in text


def test_account_credit_is_printed_under_the_total_incl_tax_not_as_a_line(make_account):
    account = french_buyer(make_account)
    source = issue(account, 100)
    AccountCredit.objects.create(
        account=account,
        currency="EUR",
        amount_minor=2400,
        remaining_minor=2400,
        source=source,
        description="Goodwill",
        created_at=T0,
    )
    invoice = issue(account, 10000, at=T0 + DAY)
    text = text_of(invoice)
    assert "Subtotal (excl. tax) €100.00" in text
    assert "VAT FR 20 % on €100.00 €20.00" in text
    assert "Total (incl. tax) €120.00" in text
    settled = invoice.lines.get(is_settlement=True)
    assert f"{settled.description} -€24.00" in text
    assert "Amount due €96.00" in text


def test_an_invoice_issued_before_tax_prints_todays_seller_and_one_total(make_account):
    account = make_account()
    invoice = issue(account, 5000)
    Invoice.objects.filter(pk=invoice.pk).update(
        tax_treatment="", tax_decision={}, tax_rates=[], tax_minor=0, total_minor=5000, parties={}
    )
    text = text_of(invoice)
    assert "Helpdesk Billing SAS 1 rue de l'Exemple" in text  # TAX_SELLER_*, not a setting gone
    assert "Total $50.00" in text
    assert "Subtotal" not in text and "incl. tax" not in text


# --- The invoices page and the receipt -------------------------------------------------------


def invoices_page(client, django_user_model, account) -> str:
    """The account's Invoices tab, as its owner sees it."""
    user = django_user_model.objects.create_user(f"owner@{account.slug}.example", password="pw")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    client.force_login(user)
    with time_machine.travel(T0 + 2 * DAY, tick=False):
        response = client.get(f"/billing/{account.slug}/invoices/")
    assert response.status_code == 200
    return re.sub(r"\s+", " ", response.content.decode())


def test_the_invoices_page_shows_the_parties_the_breakdown_and_the_totals(
    client, django_user_model, make_account
):
    account = french_buyer(make_account, slug="lumiere")
    invoice = issue(account, 4900, 1234)
    page = invoices_page(client, django_user_model, account)
    assert f'id="invoice-{invoice.pk}-tax"' in page
    assert "<strong>Helpdesk Billing SAS</strong>" in page and "VAT id FR11123456782" in page
    assert "<strong>Boutique Lumière SARL</strong>" in page and f"VAT id {FR_BUYER_VAT}" in page
    assert '<span>Subtotal (excl. tax)</span><span></span><span class="num">€61.34</span>' in page
    assert (
        '<span>VAT FR 20 %</span><span class="muted">on €61.34</span>'
        '<span class="num">€12.27</span>' in page
    )
    assert '<span>Total tax</span><span></span><span class="num">€12.27</span>' in page
    assert '<span>Total (incl. tax)</span><span></span><span class="num">€73.61</span>' in page
    assert "incl. €12.27 VAT" in page  # beside the amount


def test_the_invoices_page_says_the_reverse_charge_mention(client, django_user_model, make_account):
    account = german_buyer(make_account, slug="beispiel")
    issue(account, 4900, 1234)
    page = invoices_page(client, django_user_model, account)
    assert f"VAT id {DE_VALID_VAT}" in page
    assert (
        '<span>Reverse charge</span><span class="muted">on €61.34</span>'
        '<span class="num">€0.00</span>' in page
    )
    assert "Article 196 of Directive 2006/112/EC" in page
    assert "incl. €0.00" not in page


def test_a_shopify_account_reads_that_shopify_invoices_the_tax(
    client, django_user_model, make_account
):
    account = buyer(make_account(slug="shopified"), country="FR", billing_channel="shopify")
    invoice = issue(account, 4900)
    page = invoices_page(client, django_user_model, account)
    assert "Shopify invoices the tax on its charges: our statements carry no tax lines." in page
    assert f'id="invoice-{invoice.pk}-tax"' not in page
    assert "Subtotal (excl. tax)" not in page


def test_the_receipt_states_the_total_incl_vat(make_account, stripe_standin):
    account = french_buyer(make_account)
    card(account, stripe_standin, OK)
    invoice = issue(account, 4900, 1234)
    with emails_sent():
        payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    (receipt,) = [m for m in mail.outbox if invoice.number in m.body]
    assert "Invoice total: €73.61 (incl. €12.27 VAT)" in receipt.body


# --- The partner API, its webhooks and its schema --------------------------------------------


@pytest.fixture
def endpoint(partner):
    """A partner's webhook endpoint: issued invoices then write their events."""
    return outbox_services.endpoint_create(partner=partner, url="https://hooks.example/in")


def test_the_api_gives_the_breakdown_the_treatment_and_the_mentions(
    partner_api, make_account, endpoint
):
    account = german_buyer(make_account, slug="beispiel")
    invoice = issue(account, 4900, 1234)
    body = partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()
    eur = {"currency": "EUR"}
    assert body["subtotal"] == {"amount": 6134, **eur}
    assert body["tax"] == [
        {
            "rate": "0",
            "label": "Reverse charge",
            "taxable_amount": {"amount": 6134, **eur},
            "tax_amount": {"amount": 0, **eur},
        }
    ]
    assert body["tax_total"] == {"amount": 0, **eur}
    assert body["total"] == {"amount": 6134, **eur}
    assert body["tax_treatment"] == "reverse_charge"
    assert any("Article 196" in mention for mention in body["tax_mentions"])
    assert body["vat_id_unconfirmed"] is False
    (listed,) = partner_api.get("/api/v1/accounts/beispiel/invoices").json()["results"]
    assert listed["tax_total"] == {"amount": 0, **eur}
    assert listed["tax_treatment"] == "reverse_charge"


def test_a_credit_note_in_the_api_and_its_webhook_carries_negative_tax(
    partner_api, make_account, endpoint
):
    invoice = issue(french_buyer(make_account), 4900, 1234)
    note = invoicing.credit_note_issue(invoice=invoice, amount_minor=3067, description="Outage")
    body = partner_api.get(f"/api/v1/invoices/{note.pk}").json()
    assert body["subtotal"]["amount"] == -3067 and body["tax_total"]["amount"] == -613
    assert body["tax"][0]["label"] == "VAT FR 20 %" and body["tax"][0]["rate"] == "20"
    assert body["total"]["amount"] == -3680 and body["tax_treatment"] == "domestic"
    (issued,) = Event.objects.filter(type="credit_note.issued")
    data = issued.data["invoice"]
    assert (data["subtotal"]["amount"], data["tax_total"]["amount"]) == (-3067, -613)
    assert data["tax"][0]["tax_amount"] == {"amount": -613, "currency": "EUR"}


def test_the_invoice_finalized_webhook_carries_the_tax(make_account, endpoint):
    account = buyer(
        make_account(slug="unconfirmed", currency="EUR"),
        country="DE",
        vat_id=DE_VALID_VAT,
        tax_id_status="pending",
    )
    invoice = issue(account, 4900, 1234)
    (finalized,) = Event.objects.filter(type="invoice.finalized", account=account)
    data = finalized.data["invoice"]
    assert data["id"] == invoice.pk
    assert data["subtotal"] == {"amount": 6134, "currency": "EUR"}
    assert data["tax"] == [
        {
            "rate": "19",
            "label": "VAT DE 19 %",
            "taxable_amount": {"amount": 6134, "currency": "EUR"},
            "tax_amount": {"amount": 1165, "currency": "EUR"},
        }
    ]
    assert data["tax_total"] == {"amount": 1165, "currency": "EUR"}
    assert data["total"] == {"amount": 7299, "currency": "EUR"}
    assert data["tax_treatment"] == "oss"
    assert data["vat_id_unconfirmed"] is True
    assert any("had not confirmed VAT id DE123456788" in m for m in data["tax_mentions"])


def test_the_schema_declares_the_tax_fields(client, db):
    schemas = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    for name in ("InvoiceSummaryOut", "InvoiceOut"):
        properties = schemas[name]["properties"]
        for field in (
            "subtotal",
            "tax",
            "tax_total",
            "total",
            "tax_treatment",
            "tax_mentions",
            "vat_id_unconfirmed",
        ):
            assert field in properties, (name, field)
            assert field in schemas[name]["required"], (name, field)
    rate = schemas["TaxRateOut"]["properties"]
    assert set(rate) == {"rate", "label", "taxable_amount", "tax_amount"}
    assert rate["rate"]["type"] == "string"
