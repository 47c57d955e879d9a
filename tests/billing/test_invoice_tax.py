"""Tax on issued invoices and credit notes (docs/tax.md, docs/pricing.md "Tax, worked
examples"): decided once at issue, frozen on the invoice, charged as the total; a credit note
reuses its invoice's decision; account credit is spent after tax.

The seller is the demo's (FR, OSS, registered in WA). Exact cents; times are fixed."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.models import Account
from billing import invoicing, payments, statement, tax_corrections
from billing.closing import vat_ids_recheck_before_issue
from billing.models import AccountCredit, Invoice, PaymentAttempt
from plans import pricing
from tests.billing.test_payments import OK
from tests.billing.test_statement import DAY, T0, card, emails_sent

pytestmark = pytest.mark.usefixtures("eu_seller")

FR_BUYER_VAT = "FR40303265045"
DE_VALID_VAT = "DE123456788"  # registered at the VIES stand-in


def buyer(account, **identity) -> Account:
    Account.objects.filter(pk=account.pk).update(**identity)
    account.refresh_from_db()
    return account


def fee(amount_minor: int, at=T0, description="Helpdesk fee") -> pricing.Line:
    return pricing.Line(
        kind="plan_fee",
        description=description,
        meter=None,
        quantity=1,
        unit_price_minor=Decimal(amount_minor),
        amount_minor=amount_minor,
        rules=("P1",),
        period_start=at,
        period_end=at + timedelta(days=30),
    )


def issue(account, *amounts: int, at=T0) -> Invoice:
    """An invoice of these fee lines, issued as a close issues it."""
    return invoicing.invoice_issue(
        subscription=None,
        account_id=account.pk,
        currency=account.currency,
        reason="period_close",
        period=pricing.Period(start=at, end=at + timedelta(days=30)),
        lines=[fee(amount, at) for amount in amounts],
        at=at,
    )


def figures(invoice) -> tuple:
    invoice.refresh_from_db()
    return invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor


# --- The worked examples of docs/pricing.md, issued ------------------------------------------


def test_fr_to_fr_charges_french_vat_at_20_percent(make_account):
    account = buyer(make_account(currency="EUR"), country="FR", vat_id=FR_BUYER_VAT)
    invoice = issue(account, 4900, 1234)
    assert figures(invoice) == (6134, 1227, 7361)
    assert invoice.tax_treatment == "domestic"
    assert invoice.tax_rates == [
        {"rate": "20", "label": "VAT FR 20 %", "taxable_minor": 6134, "tax_minor": 1227}
    ]
    seller, customer = invoice.parties["seller"], invoice.parties["buyer"]
    assert (seller["legal_name"], seller["tax_id"]) == ("Helpdesk Billing SAS", "FR11123456782")
    assert customer["tax_id"] == FR_BUYER_VAT


def test_fr_to_de_without_a_vat_id_charges_german_vat_through_oss(make_account):
    account = buyer(make_account(currency="EUR"), country="DE")
    invoice = issue(account, 4900, 1234)
    assert figures(invoice) == (6134, 1165, 7299)
    assert invoice.tax_treatment == "oss"
    assert invoice.tax_rates[0]["label"] == "VAT DE 19 %"


def test_fr_to_de_with_a_valid_vat_id_is_reverse_charged(make_account):
    account = buyer(
        make_account(currency="EUR"),
        country="DE",
        vat_id=DE_VALID_VAT,
        tax_id_status="valid",
        tax_id_checked_at=T0 - DAY,
    )
    invoice = issue(account, 4900, 1234)
    assert figures(invoice) == (6134, 0, 6134)
    assert invoice.tax_treatment == "reverse_charge"
    assert (
        invoice.tax_rates
        == [{"rate": "0", "label": "Reverse charge", "taxable_minor": 6134, "tax_minor": 0}]
        or invoice.tax_rates[0]["taxable_minor"] == 6134
    )
    mentions = invoice.tax_decision["mentions"]
    assert any("Article 196 of Directive 2006/112/EC" in m for m in mentions)
    assert invoice.tax_decision["buyer_tax_id"] == DE_VALID_VAT
    assert invoice.tax_decision["seller_tax_id"] == "FR11123456782"
    assert not invoice.vat_id_unconfirmed


def test_a_vat_id_vies_has_not_confirmed_is_charged_vat_and_listed(make_account):
    account = buyer(
        make_account(currency="EUR"), country="DE", vat_id=DE_VALID_VAT, tax_id_status="pending"
    )
    invoice = issue(account, 4900, 1234)
    assert figures(invoice) == (6134, 1165, 7299)
    assert invoice.vat_id_unconfirmed
    assert any(
        "had not confirmed VAT id DE123456788" in m for m in invoice.tax_decision["mentions"]
    )


def test_fr_to_us_charges_sales_tax_only_where_the_seller_is_registered(make_account):
    washington = buyer(make_account(slug="wa"), country="US", us_state="WA")
    california = buyer(make_account(slug="ca"), country="US", us_state="CA")
    assert figures(issue(washington, 4900, 1234)) == (6134, 399, 6533)
    not_registered = issue(california, 10000)
    assert figures(not_registered) == (10000, 0, 10000)
    assert not_registered.tax_treatment == "us_not_registered"
    assert any(
        "not registered to collect it in CA" in m for m in not_registered.tax_decision["mentions"]
    )


def test_the_decision_is_frozen_a_later_vat_id_changes_no_issued_invoice(make_account):
    account = buyer(make_account(currency="EUR"), country="DE")
    invoice = issue(account, 10000)
    buyer(account, vat_id=DE_VALID_VAT, tax_id_status="valid", tax_id_checked_at=T0)
    assert figures(invoice) == (10000, 1900, 11900)
    assert issue(account, 10000, at=T0 + 30 * DAY).tax_minor == 0  # the next one is reverse charged


def test_the_charge_is_the_total_tax_included(make_account, stripe_standin):
    account = buyer(make_account(currency="EUR"), country="FR")
    card(account, stripe_standin, OK)
    invoice = issue(account, 4900, 1234)
    with emails_sent():
        payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    (attempt,) = PaymentAttempt.objects.filter(invoice=invoice)
    assert (attempt.amount_minor, attempt.status) == (7361, "succeeded")
    invoice.refresh_from_db()
    assert invoice.status == "paid"


# --- Credit notes ----------------------------------------------------------------------------


def test_a_credit_note_gives_back_tax_in_proportion_and_never_a_cent_more(make_account):
    account = buyer(make_account(currency="EUR"), country="FR")
    invoice = issue(account, 4900, 1234)  # 61.34 + 12.27 VAT = 73.61
    first = invoicing.credit_note_issue(invoice=invoice, amount_minor=3067, description="Outage")
    assert figures(first) == (-3067, -613, -3680)
    assert first.tax_treatment == "domestic" and first.tax_rates[0]["tax_minor"] == -613
    second = invoicing.credit_note_issue(invoice=invoice, amount_minor=3067, description="Outage")
    assert figures(second) == (-3067, -614, -3681)  # the two give back 12.27, exactly
    invoice.refresh_from_db()
    assert invoice.status == "paid"  # credited in full before any charge: nothing to pay
    with pytest.raises(invoicing.Conflict):
        invoicing.credit_note_issue(invoice=invoice, amount_minor=1, description="More")


def test_a_credit_note_reuses_its_invoices_decision_not_todays(make_account):
    account = buyer(make_account(currency="EUR"), country="DE")
    invoice = issue(account, 10000)  # OSS, 19 %
    buyer(account, vat_id=DE_VALID_VAT, tax_id_status="valid", tax_id_checked_at=T0)
    note = invoicing.credit_note_issue(invoice=invoice, amount_minor=10000, description="Refund")
    assert figures(note) == (-10000, -1900, -11900)
    assert note.tax_treatment == "oss"


def test_credit_on_a_paid_invoice_comes_back_tax_included_and_is_spent_after_tax(
    make_account, stripe_standin
):
    account = buyer(make_account(currency="EUR"), country="FR")
    card(account, stripe_standin, OK)
    paid = issue(account, 10000)  # 100.00 + 20.00
    with emails_sent():
        payments.invoice_charge(invoice_id=paid.pk, trigger="automatic")
    note = invoicing.credit_note_issue(invoice=paid, amount_minor=5000, description="Outage")
    assert figures(note) == (-5000, -1000, -6000)
    (credit,) = AccountCredit.objects.filter(account=account)
    assert credit.amount_minor == 6000  # what was paid comes back, its tax with it
    following = issue(account, 10000, at=T0 + 30 * DAY)
    # The next invoice is taxed on its full price; the credit settles it after tax.
    assert figures(following) == (10000, 2000, 6000)
    lines = list(following.lines.order_by("position"))
    assert [(line.amount_minor, line.is_settlement) for line in lines] == [
        (10000, False),
        (-6000, True),
    ]
    assert statement.invoice_figures(following).amount_due_minor == 6000


def test_the_most_a_note_may_take_leaves_out_account_credit_already_used(make_account):
    account = buyer(make_account(currency="EUR"), country="FR")
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
    invoice = issue(account, 10000, at=T0 + DAY)  # 120.00, of which 24.00 by credit: 96.00
    assert figures(invoice) == (10000, 2000, 9600)
    most = statement.invoice_figures(invoice).creditable_minor
    assert most == 8000  # 80.00 + 16.00 VAT = the 96.00 left
    with pytest.raises(invoicing.Conflict, match="between 1 and 8000"):
        invoicing.credit_note_issue(invoice=invoice, amount_minor=8001, description="Too much")


def test_an_invoice_issued_before_tax_is_credited_without_tax(make_account):
    account = make_account()
    invoice = issue(account, 5000)
    Invoice.objects.filter(pk=invoice.pk).update(
        tax_treatment="", tax_decision={}, tax_rates=[], tax_minor=0, total_minor=5000
    )
    invoice.refresh_from_db()
    note = invoicing.credit_note_issue(invoice=invoice, amount_minor=5000, description="Outage")
    assert figures(note) == (-5000, 0, -5000)


# --- Channels and checks ---------------------------------------------------------------------


def test_the_shopify_channel_carries_no_tax_from_us(make_account):
    account = buyer(make_account(currency="USD"), country="FR", billing_channel="shopify")
    invoice = issue(account, 4900)
    assert figures(invoice) == (4900, 0, 4900)
    assert invoice.tax_treatment == "shopify_channel" and invoice.tax_rates == []
    assert "Shopify invoices the tax" in invoice.tax_decision["mentions"][0]


def test_the_suites_seller_is_a_us_company_and_charges_its_buyers_nothing(make_account, settings):
    settings.TAX_SELLER_COUNTRY, settings.TAX_SELLER_US_STATES = "US", []
    invoice = issue(make_account(), 4900)
    assert figures(invoice) == (4900, 0, 4900)
    assert invoice.tax_treatment == "us_not_registered"


def account_due_for_a_close(make_account, slug: str = "shop") -> tuple[Account, object]:
    """A German account with a valid VAT id last confirmed 40 days before its period's close
    (the period is the one under way now: the close is computed from it, not from a date)."""
    account = make_account(slug, currency="EUR")
    close_at = account.subscriptions.get().usage_period_end + DAY
    return buyer(
        account,
        country="DE",
        vat_id=DE_VALID_VAT,
        tax_id_status="valid",
        tax_id_checked_at=close_at - 40 * DAY,
    ), close_at


def test_a_stale_vat_id_is_asked_again_before_its_close(make_account, vies_standin):
    account, close_at = account_due_for_a_close(make_account)
    assert vat_ids_recheck_before_issue(as_of=close_at - 2 * DAY) == 0  # not due yet
    assert vat_ids_recheck_before_issue(as_of=close_at) == 1
    account.refresh_from_db()
    assert account.tax_id_status == "valid" and account.tax_id_consultation
    assert vies_standin.checks()[-1]["vatNumber"] == DE_VALID_VAT[2:]


def test_vies_down_before_a_close_keeps_the_last_good_answer(make_account, vies_standin):
    account, close_at = account_due_for_a_close(make_account)
    vies_standin.mode("down", times=5)
    vat_ids_recheck_before_issue(as_of=close_at)
    account.refresh_from_db()
    assert (account.tax_id_status, account.tax_id_checked_at) == ("valid", close_at - 40 * DAY)
    assert issue(account, 10000, at=close_at).tax_treatment == "reverse_charge"


def test_a_member_states_vies_down_is_asked_twice_per_close_not_once_per_account(
    make_account, vies_standin
):
    """Four German ids due for a re-check while Germany's VIES is down: the run asks about two,
    gives up on that state for this run (each try can cost VIES_TIMEOUT_SECONDS), and every
    account keeps its last good answer."""
    due = [account_due_for_a_close(make_account, f"shop-{n}") for n in range(4)]
    close_at = max(at for _, at in due)
    vies_standin.mode("down")
    assert vat_ids_recheck_before_issue(as_of=close_at) == 2
    assert len(vies_standin.checks()) == 2
    for account, _ in due:
        account.refresh_from_db()
        assert account.tax_id_status == "valid"


# --- VAT charged while VIES was down, given back once it confirms the id ----------------------


def test_vat_charged_on_an_unconfirmed_id_is_given_back_once_vies_confirms_it(
    make_account, stripe_standin
):
    account = buyer(
        make_account(currency="EUR"), country="DE", vat_id=DE_VALID_VAT, tax_id_status="unavailable"
    )
    card(account, stripe_standin, OK)
    invoice = issue(account, 10000)  # 100.00 + 19.00 VAT, charged: VIES had not answered
    with emails_sent():
        payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    (waiting,) = tax_corrections.vat_corrections_list(account=account)
    assert not waiting.correctable and "has not confirmed" in waiting.why_not
    with pytest.raises(invoicing.Conflict, match="has not confirmed"):
        tax_corrections.vat_correction_issue(invoice=invoice, reason="asked by the merchant")

    buyer(account, tax_id_status="valid", tax_id_checked_at=T0 + DAY, tax_id_consultation="WAPI1")
    (ready,) = tax_corrections.vat_corrections_list(account=account)
    assert ready.correctable
    note = tax_corrections.vat_correction_issue(invoice=invoice, reason="VIES confirmed")
    assert figures(note) == (0, -1900, -1900)
    assert "confirmed by VIES" in note.description and "WAPI1" in note.description
    (credit,) = AccountCredit.objects.filter(account=account)
    assert credit.amount_minor == 1900  # paid, so the VAT comes back as account credit
    assert tax_corrections.vat_corrections_list(account=account) == []
    with pytest.raises(invoicing.Conflict, match="no VAT to correct"):
        tax_corrections.vat_correction_issue(invoice=invoice, reason="twice")
    # What is left to credit is the base alone, with no VAT left to give back.
    assert statement.invoice_figures(invoice).creditable_minor == 10000
    rest = invoicing.credit_note_issue(invoice=invoice, amount_minor=10000, description="Refund")
    assert figures(rest) == (-10000, 0, -10000)


def test_a_vat_correction_on_an_unpaid_invoice_lowers_what_is_charged(make_account):
    account = buyer(
        make_account(currency="EUR"), country="DE", vat_id=DE_VALID_VAT, tax_id_status="pending"
    )
    invoice = issue(account, 10000)
    buyer(account, tax_id_status="valid", tax_id_checked_at=T0 + DAY)
    tax_corrections.vat_correction_issue(invoice=invoice, reason="VIES confirmed")
    assert statement.invoice_figures(invoice).amount_due_minor == 10000


def test_a_vat_id_changed_since_cannot_correct_the_invoice(make_account):
    account = buyer(
        make_account(currency="EUR"), country="DE", vat_id=DE_VALID_VAT, tax_id_status="pending"
    )
    issue(account, 10000)
    buyer(account, vat_id="DE811569869", tax_id_status="valid", tax_id_checked_at=T0)
    (row,) = tax_corrections.vat_corrections_list(account=account)
    assert not row.correctable and "not DE123456788" in row.why_not
