"""Invoices page: badges, what each invoice covers, PDF, Retry payment and Pay all outstanding
through the one collection path (`payments.invoice_charge`, trigger "retry")."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from pypdf import PdfReader

from accounts.errors import Conflict
from billing import payments
from billing.invoicing import credit_note_issue
from billing.models import Invoice, PaymentAttempt
from billing.run import run_billing
from plans.models import Subscription
from tests.billing.charges import counted
from tests.billing.pages_fixtures import HALF, T0, account, at  # noqa: F401
from tests.billing.test_payments import DECLINED, OK, THREE_DS


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def card(account, stripe_standin, number):  # noqa: F811
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(number))


def declined(account, stripe_standin):  # noqa: F811
    """The first invoice, charged to a card the bank declines: past due, reason in words."""
    card(account, stripe_standin, DECLINED)
    invoice = Invoice.objects.get(account=account)
    payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic", at=T0)
    invoice.refresh_from_db()
    assert invoice.status == "past_due"
    return invoice


def test_invoices_list_status_badge_coverage_and_pdf(logged_in, account):  # noqa: F811
    invoice = Invoice.objects.get(account=account)
    with at():
        page = logged_in.get("/billing/shop/invoices/").content.decode()
    assert invoice.number in page and "Subscription start" in page
    assert '<span class="badge info">Open</span>' in page
    assert "Fees Nov 1 – Nov 30, 2026" in page and "$60.00" in page
    pdf = logged_in.get(f"/billing/shop/invoices/{invoice.pk}/pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    text = PdfReader(__import__("io").BytesIO(pdf.content)).pages[0].extract_text()
    assert invoice.number in text


def test_a_close_shows_its_usage_period_and_fee_period_apart_across_the_year(
    client,
    owner,
    account,  # noqa: F811
):
    # Two closes: Dec 1 (usage of November, fees of December) and Jan 1 (usage of December,
    # fees of January 2027): each period written as the days it covers, the year where it differs.
    for moment in (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)):
        counted(account, "helpdesk_tickets", 350, moment - timedelta(days=20))  # overage
        with at(moment):
            run_billing(as_of=moment)
    with at(datetime(2027, 1, 2, tzinfo=UTC)):
        client.force_login(owner)  # a session of that day
        page = client.get("/billing/shop/invoices/").content.decode()
    assert "Usage Nov 1 – Nov 30, 2026" in page and "Fees Dec 1 – Dec 31, 2026" in page
    assert "Usage Dec 1 – Dec 31, 2026" in page
    assert "Fees Jan 1 – Jan 31, 2027" in page
    assert "Dec 1, 2026 – Jan 1, 2027" not in page and "– Jan 1, 2027" not in page


def test_credit_notes_are_listed_with_the_invoice_they_credit(logged_in, account):  # noqa: F811
    invoice = Invoice.objects.get(account=account)
    credit = credit_note_issue(invoice=invoice, amount_minor=500, description="Goodwill", at=HALF)
    page = logged_in.get("/billing/shop/invoices/").content.decode()
    assert credit.number in page and "Credit note" in page and f"for {invoice.number}" in page
    assert "-$5.00" in page


def test_retry_after_a_card_update_pays_and_lifts_the_past_due_state(
    logged_in,
    account,  # noqa: F811
    stripe_standin,
):
    invoice = declined(account, stripe_standin)
    page = logged_in.get("/billing/shop/invoices/").content.decode()
    assert "The bank declined the payment" in page  # the failure reason, in words
    assert "Retry payment" in page and '<span class="badge bad">Past due</span>' in page
    card(account, stripe_standin, OK)
    response = logged_in.post(
        f"/billing/shop/invoices/{invoice.pk}/retry", {"form_token": "t1"}, follow=True
    )
    assert f"Invoice {invoice.number} ($60.00) is paid. Thank you!" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert Subscription.objects.get(account=account).status == "active"
    [retry] = PaymentAttempt.objects.filter(invoice=invoice, trigger="retry")
    assert retry.status == "succeeded"


def test_a_failed_retry_says_why_never_an_empty_reason(logged_in, account, stripe_standin):  # noqa: F811
    invoice = declined(account, stripe_standin)
    response = logged_in.post(f"/billing/shop/invoices/{invoice.pk}/retry", follow=True)
    page = response.content.decode()
    assert f"The payment of invoice {invoice.number} failed: The bank declined" in page


def test_a_double_click_on_retry_charges_once(logged_in, account, stripe_standin):  # noqa: F811
    invoice = declined(account, stripe_standin)
    card(account, stripe_standin, OK)
    with mock.patch.object(payments, "invoice_charge", wraps=payments.invoice_charge) as charge:
        logged_in.post(f"/billing/shop/invoices/{invoice.pk}/retry", {"form_token": "same"})
        second = logged_in.post(
            f"/billing/shop/invoices/{invoice.pk}/retry", {"form_token": "same"}, follow=True
        )
    assert charge.call_count == 1
    assert "That form was already sent" in second.content.decode()
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 2  # declined + one retry


def test_a_payment_in_flight_is_a_flash_message_not_an_error(logged_in, account, stripe_standin):  # noqa: F811
    invoice = declined(account, stripe_standin)
    busy = Conflict("A payment of this invoice is already in progress.", code="payment_in_progress")
    with mock.patch.object(payments, "invoice_charge", side_effect=busy) as charge:
        response = logged_in.post(f"/billing/shop/invoices/{invoice.pk}/retry", follow=True)
    charge.assert_called_once_with(invoice_id=invoice.pk, trigger="retry", at=None)
    assert response.status_code == 200
    assert "A payment of this invoice is already in progress." in response.content.decode()


def test_confirm_payment_appears_where_the_bank_wants_authentication(
    logged_in,
    account,  # noqa: F811
    stripe_standin,
):
    card(account, stripe_standin, THREE_DS)
    invoice = Invoice.objects.get(account=account)
    payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    page = logged_in.get("/billing/shop/invoices/").content.decode()
    assert "Confirm payment" in page and "/pay/confirm/" in page
    assert "Retry payment" not in page


def test_pay_all_outstanding_charges_each_unpaid_invoice_through_retry(
    logged_in,
    account,  # noqa: F811
    stripe_standin,
):
    invoice = declined(account, stripe_standin)
    card(account, stripe_standin, OK)
    page = logged_in.get("/billing/shop/").content.decode()
    assert "Pay all outstanding" in page
    with mock.patch.object(payments, "invoice_charge", wraps=payments.invoice_charge) as charge:
        response = logged_in.post("/billing/shop/pay-outstanding", follow=True)
    charge.assert_called_once_with(invoice_id=invoice.pk, trigger="retry", at=None)
    assert "is paid. Thank you!" in response.content.decode()
    assert "Nothing to pay. Thank you!" in response.content.decode()


def test_retry_without_a_card_is_not_offered(logged_in, account):  # noqa: F811
    page = logged_in.get("/billing/shop/invoices/").content.decode()
    assert "Retry payment" not in page


def test_retry_and_pay_all_without_a_card_ask_for_one_and_charge_nothing(logged_in, account):  # noqa: F811
    invoice = Invoice.objects.get(account=account)
    with mock.patch.object(payments, "invoice_charge") as charge:
        for path in (f"/billing/shop/invoices/{invoice.pk}/retry", "/billing/shop/pay-outstanding"):
            response = logged_in.post(path)
            assert response["Location"] == "/billing/shop/payment-method"
            # The card form itself calls Stripe: read the message on another page.
            assert "Add a card first" in logged_in.get("/billing/shop/").content.decode()
    charge.assert_not_called()
    invoice.refresh_from_db()
    assert invoice.status == "open"


def test_an_edition_account_sees_its_pages_and_cannot_self_serve_changes(
    client, make_account, django_user_model
):
    from accounts.models import Membership

    with at(T0):
        team = make_account(slug="team", plan="professional", full_agents=4)
    user = django_user_model.objects.create_user("owner@team.example", password="pw")
    Membership.objects.create(user=user, account=team, role=Membership.Role.OWNER)
    client.force_login(user)
    with at(HALF):
        for path in ("", "usage/", "plan/", "add-ons/", "invoices/", "details/"):
            response = client.get(f"/billing/team/{path}")
            assert response.status_code == 200, path
        assert "set by our team" in client.get("/billing/team/plan/").content.decode()
        change = client.get("/billing/team/change/?plan=pro", follow=True).content.decode()
    assert "Per-agent editions are changed by an operator." in change
