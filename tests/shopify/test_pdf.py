"""The documents of a Shopify-channel account: its PDF is a "Usage statement", says it is not a
tax invoice (Shopify's bill is) and lists Shopify's usage record per line; what settled it reads
"billed through Shopify", never "paid out of band"."""

from io import BytesIO

import pytest
import time_machine
from pypdf import PdfReader

from billing import payments, statement
from billing.models import Invoice
from billing.pdf import NOT_A_TAX_INVOICE
from billing.selectors import invoice_document
from tests.shopify import flows
from tests.shopify.surfaces import LATER, close_over_the_cap, make_shopify


@pytest.fixture
def account(make_account, shopify_standin):
    account, app = make_shopify(make_account, shopify_standin)
    account.app = app
    return account


def pdf_text(client, account, invoice) -> str:
    with time_machine.travel(LATER, tick=False):
        response = client.get(f"/billing/{account.slug}/invoices/{invoice.pk}/pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    reader = PdfReader(BytesIO(response.content))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def test_the_pdf_is_a_usage_statement_with_shopify_record_ids(client, owner, account):
    invoice = close_over_the_cap(account, account.app)
    client.force_login(owner)
    text = pdf_text(client, account, invoice)
    assert text.count("Usage statement") >= 1 and "Invoice " not in text
    assert " ".join(NOT_A_TAX_INVOICE.split()) in text
    assert "Shopify usage record 4021: $500.00 posted" in text
    assert "Usage record part 2: $300.00 held over the approved cap" in text


def test_a_paid_statement_reads_billed_through_shopify(shopify_standin, catalog):
    account = flows.active_account(shopify_standin)
    start = Invoice.objects.get(account=account, reason="subscription_start")
    payments.invoice_charge(invoice_id=start.pk, trigger="automatic")  # the collection sweep
    start.refresh_from_db()
    assert start.status == "paid"  # no usage line: its fee is Shopify's recurring charge
    figures = statement.invoice_figures(start)
    words = statement.settlement_words(figures)
    assert words == "$60.00 billed through Shopify" and "out of band" not in words
    document = invoice_document(invoice=start)
    assert document.usage_statement and document.settlement == (("billed through Shopify", 6000),)


def test_a_card_account_keeps_its_invoice(client, owner, make_account):
    from tests.billing.pages_fixtures import T0

    with time_machine.travel(T0, tick=False):
        card = make_account(slug="cards")
    from billing.run import run_billing

    with time_machine.travel(T0, tick=False):
        run_billing(as_of=T0)
    document = invoice_document(invoice=Invoice.objects.get(account=card))
    assert not document.usage_statement and all(not line.records for line in document.lines)
