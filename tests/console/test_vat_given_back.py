"""VAT to give back (issue 25, item 7; docs/tax.md "Operators: VAT given back"): the console
lists the invoices that charged VAT because VIES had not confirmed the buyer's VAT id, says why
one cannot be corrected yet, and once VIES has confirmed the id, "Give back the VAT" issues the
credit note of the invoice's VAT, once, audited as the operator's.

The seller is the demo's (FR, OSS): a German buyer whose VAT id VIES has not confirmed pays
German VAT at 19 %; 100.00 EUR owes 19.00 EUR of it."""

import html

import pytest

from audit.models import AuditEntry
from billing import statement
from billing.models import Invoice, InvoiceKind
from tests.billing.test_invoice_tax import DE_VALID_VAT, buyer, issue
from tests.billing.test_statement import DAY, T0

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eu_seller")]


@pytest.fixture
def unconfirmed(make_account) -> Invoice:
    """An open invoice of 100.00 EUR + 19.00 EUR VAT, issued while VIES had not answered."""
    account = buyer(
        make_account(slug="beispiel", currency="EUR"),
        company="Beispiel Support GmbH",
        country="DE",
        vat_id=DE_VALID_VAT,
        tax_id_status="unavailable",
    )
    invoice = issue(account, 10000)
    assert (invoice.tax_minor, invoice.total_minor, invoice.vat_id_unconfirmed) == (
        1900,
        11900,
        True,
    )
    return invoice


def confirmed(invoice: Invoice) -> None:
    """VIES has confirmed the same VAT id since."""
    buyer(
        invoice.account,
        tax_id_status="valid",
        tax_id_checked_at=T0 + DAY,
        tax_id_consultation="WAPIAAAAZ9",
    )


def text(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return html.unescape(response.content.decode())


def action_url(invoice: Invoice) -> str:
    return f"/console/invoices/{invoice.pk}/vat-give-back/"


def test_the_page_lists_the_invoice_and_says_why_not_while_vies_has_not_confirmed(ops, unconfirmed):
    page = text(ops, "/console/vat/")
    assert 'aria-current="page">VAT to give back</a>' in page  # in the console's navigation
    row = page.split(f'id="vat-{unconfirmed.pk}"')[1].split("</tr>")[0]
    assert "Beispiel" in row and unconfirmed.number in row
    assert "Nov 1, 2026" in row
    assert "DE123456788" in row and 'data-tax-id-status="unavailable"' in row
    assert "€19.00" in row
    assert "VIES has not confirmed DE123456788 yet (VIES could not answer)." in row
    assert "Give back the VAT" not in row
    # Not offered on the invoice either, and the account page lists the same row.
    assert "vat-give-back" not in text(ops, f"/console/invoices/{unconfirmed.pk}/")
    account_page = text(ops, f"/console/accounts/{unconfirmed.account_id}/")
    assert 'id="vat-to-give-back"' in account_page
    assert "VIES has not confirmed DE123456788 yet" in account_page


def test_once_vies_confirms_the_operator_gives_the_vat_back_once(ops, act, unconfirmed):
    confirmed(unconfirmed)
    page = text(ops, "/console/vat/")
    assert action_url(unconfirmed) in page and "Give back the VAT" in page
    assert action_url(unconfirmed) in text(ops, f"/console/invoices/{unconfirmed.pk}/")
    confirmation = text(ops, action_url(unconfirmed))
    assert "Issues a numbered credit note of the invoice's VAT" in confirmation
    assert 'name="reason"' in confirmation and 'name="amount"' not in confirmation

    response = act(action_url(unconfirmed), reason="VIES confirmed the id: ticket 5120")
    assert response.status_code == 302
    note = Invoice.objects.get(kind=InvoiceKind.CREDIT_NOTE)
    assert note.credited_invoice_id == unconfirmed.pk
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (0, -1900, -1900)
    assert [(r["label"], r["taxable_minor"], r["tax_minor"]) for r in note.tax_rates] == [
        ("VAT DE 19 %", 0, -1900)
    ]
    assert "WAPIAAAAZ9" in note.description
    # Unpaid: netted at once, what is left to pay is the amount before tax.
    assert statement.invoice_figures(unconfirmed).amount_due_minor == 10000
    row = AuditEntry.objects.get(action="operator.vat_given_back")
    assert (row.source, row.actor, row.object_id) == ("operator", "olivia", unconfirmed.pk)
    assert row.reason == "VIES confirmed the id: ticket 5120"
    assert row.after["credit_note"] == note.number and row.after["tax_given_back"] == 1900
    shown = text(ops, response.url)
    assert f"Credit note {note.number} issued: €19.00 of VAT given back." in shown
    assert "€100.00 is left to pay" in shown

    # The row leaves the lists, and the action the invoice's actions.
    assert unconfirmed.number not in text(ops, "/console/vat/")
    assert 'id="vat-to-give-back"' not in text(ops, f"/console/accounts/{unconfirmed.account_id}/")
    assert "vat-give-back" not in text(ops, f"/console/invoices/{unconfirmed.pk}/")

    # A second attempt (another tab, a stale page) says why and issues nothing.
    again = act(action_url(unconfirmed), reason="twice")
    assert again.status_code == 302
    assert f"Invoice {unconfirmed.number} has no VAT to correct" in text(ops, again.url)
    assert Invoice.objects.filter(kind=InvoiceKind.CREDIT_NOTE).count() == 1
    assert AuditEntry.objects.filter(action="operator.vat_given_back").count() == 1


def test_before_vies_confirms_a_posted_action_says_why_and_issues_nothing(act, ops, unconfirmed):
    response = act(action_url(unconfirmed), reason="too early")
    assert response.status_code == 302
    assert "VIES has not confirmed DE123456788 yet" in text(ops, response.url)
    assert not Invoice.objects.filter(kind=InvoiceKind.CREDIT_NOTE).exists()
    assert not AuditEntry.objects.filter(action="operator.vat_given_back").exists()


@pytest.mark.parametrize("who", ["staff_without_console", "owner"])
def test_anyone_but_an_operator_cannot_see_or_give_back(request, client, who, unconfirmed):
    confirmed(unconfirmed)
    client.force_login(request.getfixturevalue(who))
    assert client.get("/console/vat/").status_code == 404
    assert client.get(action_url(unconfirmed)).status_code == 404
    response = client.post(action_url(unconfirmed), {"reason": "x", "form_token": "t-1"})
    assert response.status_code == 404
    assert not Invoice.objects.filter(kind=InvoiceKind.CREDIT_NOTE).exists()


def test_the_credit_form_asks_for_the_amount_before_tax(ops, act, unconfirmed):
    page = text(ops, f"/console/invoices/{unconfirmed.pk}/credit/")
    assert "Amount to credit, before tax" in page
    assert "At most €100.00 before tax" in page
    assert "the credit note adds its VAT in proportion" in page
    response = act(
        f"/console/invoices/{unconfirmed.pk}/credit/",
        amount="100.01",
        description="Refund",
        reason="asked",
    )
    assert response.status_code == 400
    assert "At most €100.00 before tax is left to credit." in html.unescape(
        response.content.decode()
    )
    act(
        f"/console/invoices/{unconfirmed.pk}/credit/",
        amount="50.00",
        description="Refund of half",
        reason="asked",
    )
    note = Invoice.objects.get(kind=InvoiceKind.CREDIT_NOTE)
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (-5000, -950, -5950)
