"""The statement of account (billing.statement): each invoice's total, credited, paid and amount
due, the account's credit balance and amount owed, computed once from the ledger; the charge,
the Billing & Usage page, the console, the partner API, the emails and the PDFs all state it.

Exact cents throughout; times are fixed, never today's date."""

import io
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
import time_machine
from django.core import mail
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from accounts.models import Membership
from billing import invoicing, payments, statement
from billing.models import AccountCredit, Invoice
from plans import pricing
from plans.models import Subscription
from plans.money import format_money
from tests.billing.test_payments import DECLINED, OK
from tests.conftest import client_with_key

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def issue(account, amount_minor: int, at: datetime = T0) -> Invoice:
    """An invoice of one fee line, issued (and numbered) as a close would issue it; open
    account credit is taken off it as on any invoice."""
    period = pricing.Period(start=at, end=at + timedelta(days=30))
    line = pricing.Line(
        kind="plan_fee",
        description="Helpdesk fee",
        meter=None,
        quantity=1,
        unit_price_minor=Decimal(amount_minor),
        amount_minor=amount_minor,
        rules=("P1",),
        period_start=period.start,
        period_end=period.end,
    )
    return invoicing.invoice_issue(
        subscription=None,
        account_id=account.pk,
        currency=account.currency,
        reason="upgrade",
        period=period,
        lines=[line],
        at=at,
    )


def card(account, stripe_standin, number=OK):
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(number))


def emails_sent():
    """Emails leave at once instead of after the test's (never committed) transaction."""
    return mock.patch("django.db.transaction.on_commit", side_effect=lambda f, *a, **k: f())


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def shop(account, stripe_standin):
    return account


# --- the tester's case -----------------------------------------------------------------------


def test_a_credit_note_on_a_past_due_invoice_is_owed_charged_and_told_net_everywhere(
    shop, logged_in, account_api, stripe_standin
):
    card(shop, stripe_standin, DECLINED)
    invoice = issue(shop, 24988)
    with emails_sent(), time_machine.travel(T0, tick=False):
        payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    invoice.refresh_from_db()
    assert invoice.status == "past_due"
    note = invoicing.credit_note_issue(invoice=invoice, amount_minor=4988, description="Goodwill")

    # The statement, and the charge path that reads it.
    figures = statement.invoice_figures(invoice)
    assert (figures.total_minor, figures.credited_minor, figures.paid_minor) == (24988, 4988, 0)
    assert figures.amount_due_minor == invoicing.amount_due(invoice) == 20000
    assert statement.account_statement(account=shop).amount_owed_minor == 20000

    # The page: what is owed, not the invoice's total.
    overview = logged_in.get("/billing/shop/").content.decode()
    assert "$200.00" in overview and "$249.88 outstanding" not in overview
    assert f"{invoice.number}: $200.00" in overview
    invoices = logged_in.get("/billing/shop/invoices/").content.decode()
    assert "$200.00 outstanding" in invoices and "$249.88 outstanding" not in invoices
    assert "credited $49.88" in invoices and "due $200.00" in invoices

    # The partner API.
    body = account_api.get(f"/api/v1/invoices/{invoice.pk}").json()
    assert body["amount_due"] == {"amount": 20000, "currency": "USD"}
    assert body["credited"] == {"amount": 4988, "currency": "USD"}
    assert body["amount_paid"] == {"amount": 0, "currency": "USD"}
    account_body = account_api.get("/api/v1/accounts/shop").json()
    assert account_body["amount_owed"] == {"amount": 20000, "currency": "USD"}
    assert account_body["credit_balance"] == {"amount": 0, "currency": "USD"}
    listed = account_api.get("/api/v1/accounts/shop/invoices").json()["results"]
    assert {i["number"]: i["amount_due"]["amount"] for i in listed} == {
        invoice.number: 20000,
        note.number: 0,
    }

    # A new card, Retry payment: Stripe is asked for 200.00, and the receipt says so.
    card(shop, stripe_standin, OK)
    mail.outbox.clear()
    with emails_sent():
        attempt = payments.invoice_charge(invoice_id=invoice.pk, trigger="retry")
    assert attempt.status == "succeeded" and attempt.amount_minor == 20000
    intents = stripe_standin.intents()
    assert [i.amount for i in intents if i.status == "succeeded"] == [20000]
    (receipt,) = [m for m in mail.outbox if m.subject.startswith("Receipt")]
    assert "we received $200.00 for invoice" in receipt.body
    assert "$249.88" not in receipt.body.split("Invoice total")[0]
    assert f"$49.88 settled by credit note {note.number}" in receipt.body
    assert "$200.00 charged to Visa •••• 4242" in receipt.body
    assert "Amount due: $0.00" in receipt.body
    html = receipt.alternatives[0][0]
    assert f"$49.88 settled by credit note {note.number}" in html

    # Afterwards: nothing owed anywhere.
    assert statement.account_statement(account=shop).amount_owed_minor == 0
    assert account_api.get("/api/v1/accounts/shop").json()["amount_owed"]["amount"] == 0
    body = account_api.get(f"/api/v1/invoices/{invoice.pk}").json()
    assert (body["amount_paid"]["amount"], body["amount_due"]["amount"]) == (20000, 0)
    overview = logged_in.get("/billing/shop/").content.decode()
    assert "Nothing to pay. Thank you!" in overview

    # The PDF: the total, then what settled it and what is due.
    text = pdf_text(account_api.get(f"/api/v1/invoices/{invoice.pk}/pdf").content)
    assert "$249.88" in text
    assert f"Credit note {note.number}" in text and "-$49.88" in text
    assert "Charged to Visa" in text and "-$200.00" in text
    assert "Amount due" in text and "$0.00" in text


def test_the_openapi_schema_names_the_statement_fields(client, db):
    schema = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    for name in ("amount_due", "amount_paid", "credited"):
        assert name in schema["InvoiceSummaryOut"]["properties"]
        assert name in schema["InvoiceOut"]["properties"]
    for name in ("credit_balance", "amount_owed"):
        assert name in schema["AccountOut"]["properties"]


# --- account credit and its history ----------------------------------------------------------


def test_a_credit_note_on_a_paid_invoice_is_account_credit_used_by_the_next_invoice(
    shop, logged_in, account_api, stripe_standin
):
    card(shop, stripe_standin, OK)
    first = issue(shop, 6000)
    with emails_sent():
        payments.invoice_charge(invoice_id=first.pk, trigger="automatic")
    note = invoicing.credit_note_issue(invoice=first, amount_minor=1500, description="Outage")
    state = statement.account_statement(account=shop)
    assert state.credit_balance_minor == 1500 and state.amount_owed_minor == 0
    assert account_api.get("/api/v1/accounts/shop").json()["credit_balance"]["amount"] == 1500
    page = logged_in.get("/billing/shop/").content.decode()
    assert "Account credit" in page and f"Credit note {note.number} for invoice {first.number}"

    # The next invoice spends 1,000 of it (its total is 1,000), the rest stays.
    second = issue(shop, 1000, at=T0 + 30 * DAY)
    assert second.total_minor == 0 and second.status == "paid"
    third = issue(shop, 6000, at=T0 + 60 * DAY)
    assert third.total_minor == 5500
    state = statement.account_statement(account=shop)
    (credit,) = state.credits
    assert (credit.amount_minor, credit.remaining_minor, credit.source_number) == (
        1500,
        0,
        note.number,
    )
    assert [(u.invoice_number, u.amount_minor) for u in credit.uses] == [
        (second.number, 1000),
        (third.number, 500),
    ]
    figures = state.by_id[third.pk]
    assert (
        figures.before_credit_minor,
        figures.credit_applied_minor,
        figures.amount_due_minor,
    ) == (
        6000,
        500,
        5500,
    )
    for path in ("/billing/shop/", "/billing/shop/invoices/"):
        page = logged_in.get(path).content.decode()
        assert f"Credit note {note.number} for invoice {first.number}" in page
        assert f"Invoice {second.number}: $10.00" in page
        assert f"Invoice {third.number}: $5.00" in page
    assert "after $5.00 account credit" in logged_in.get("/billing/shop/invoices/").content.decode()


def test_the_console_shows_the_figures_and_still_offers_a_credit_note_on_a_paid_invoice(
    shop, stripe_standin, client, django_user_model
):
    from tests.console.conftest import operators_group

    card(shop, stripe_standin, OK)
    invoice = issue(shop, 24988)
    note = invoicing.credit_note_issue(invoice=invoice, amount_minor=4988, description="Goodwill")
    with emails_sent():
        payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    staff = django_user_model.objects.create_user(
        "ops@billing.example", password="pw-ops-123", is_staff=True
    )
    staff.groups.add(operators_group())
    client.force_login(staff)
    page = client.get(f"/console/invoices/{invoice.pk}/").content.decode()
    assert note.number in page and "Charged to Visa" in page
    assert "Amount due" in page
    assert f"/console/invoices/{invoice.pk}/credit" in page  # 200.00 of it may still be credited
    page = client.get(f"/console/accounts/{shop.pk}/").content.decode()
    assert "Owed: <strong>$0.00</strong>" in page


def test_an_upgrade_announces_what_is_charged_after_the_account_credit(
    shop, logged_in, owner, stripe_standin
):
    from billing import changes
    from billing.closing import start_invoice_issue

    card(shop, stripe_standin, OK)
    subscription = Subscription.objects.get(account=shop)
    start = subscription.current_period_start
    first = start_invoice_issue(subscription=subscription, as_of=start)  # as run_billing would
    with emails_sent():
        payments.invoice_charge(invoice_id=first.pk, trigger="automatic")
    invoicing.credit_note_issue(invoice=first, amount_minor=1500, description="Outage")
    request = changes.ChangeRequest(plan="pro")
    with time_machine.travel(start + 15 * DAY, tick=False):
        preview = changes.subscription_change_preview(account=shop, request=request)
        assert preview.total_minor > 1500
        assert preview.charged_now_minor == preview.total_minor - 1500
        logged_in.force_login(owner)  # a session of the day
        response = logged_in.get("/billing/shop/change/?plan=pro")
        assert response.status_code == 200, response
        page = response.content.decode()
        charged = format_money(preview.charged_now_minor, "USD")
        assert "Your account credit" in page and "-$15.00" in page
        assert f"Upgrade and pay {charged}" in page
        result = changes.subscription_change(account=shop, request=request)
    assert result.invoice.total_minor == preview.charged_now_minor


# --- every surface states the ledger: a property test ---------------------------------------

# A history: invoices issued, charged (to a card that pays or one the bank declines), credited
# (unpaid: netted; paid: account credit, spent by the next invoices). Small amounts, few steps.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(min_value=1, max_value=40000)),
        st.tuples(st.just("charge"), st.integers(0, 4), st.booleans()),
        st.tuples(st.just("credit"), st.integers(0, 4), st.integers(1, 100)),
    ),
    min_size=2,
    max_size=7,
)
_slugs = itertools.count()


@pytest.mark.clock_free
@pytest.mark.django_db
def test_the_page_the_api_the_emails_and_the_pdfs_state_the_ledger(
    make_account, stripe_standin, partner, client, django_user_model
):
    from accounts import services as account_services

    _, raw = account_services.api_key_create(partner=partner, name="statement")
    api = client_with_key(raw)
    seen: Counter = Counter()  # the cases the fixed corpus went through

    @settings(
        max_examples=16,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(steps)
    # The cases the issue names, always run; generated histories come on top.
    @example([("issue", 24988), ("charge", 0, False), ("credit", 0, 20), ("charge", 0, True)])
    @example([("issue", 6000), ("charge", 0, True), ("credit", 0, 25), ("issue", 1000)])
    @example([("issue", 3000), ("charge", 0, True), ("credit", 0, 100), ("issue", 2000)])
    @example([("issue", 5000), ("credit", 0, 100), ("issue", 700), ("charge", 1, True)])
    def history(plan):
        slug = f"stmt{next(_slugs)}"
        with time_machine.travel(T0, tick=False):
            account = make_account(slug=slug)
        user = django_user_model.objects.create_user(f"owner@{slug}.example", password="pw-1234567")
        Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
        client.force_login(user)
        # The test's own ledger: what each invoice should say, by plain arithmetic.
        model: dict[int, dict] = {}
        credit = 0
        receipts: dict[int, int] = {}
        at = T0
        mail.outbox.clear()
        for step in plan:
            at += DAY
            invoices = [i for i in Invoice.objects.filter(account=account, kind="invoice")]
            invoices.sort(key=lambda i: i.pk)
            if step[0] == "issue":
                with time_machine.travel(at, tick=False):
                    invoice = issue(account, step[1], at=at)
                used = min(credit, step[1])
                credit -= used
                seen["credit used"] += bool(used)
                model[invoice.pk] = {
                    "total": step[1] - used,
                    "credited": 0,
                    "paid": 0,
                    "open": step[1] - used > 0,
                }
                continue
            if not invoices:
                continue
            invoice = invoices[step[1] % len(invoices)]
            row = model[invoice.pk]
            if step[0] == "charge":
                card(account, stripe_standin, OK if step[2] else DECLINED)
                with emails_sent(), time_machine.travel(at, tick=False):
                    attempt = payments.invoice_charge(invoice_id=invoice.pk, trigger="retry")
                if row["open"] and step[2]:
                    assert attempt is not None and attempt.amount_minor == (
                        row["total"] - row["credited"]
                    )
                    row["paid"], row["open"] = attempt.amount_minor, False
                    receipts[invoice.pk] = attempt.amount_minor
                    seen["charged net of credit notes"] += bool(row["credited"])
            else:
                left = row["total"] - row["credited"]
                if left <= 0:
                    continue
                amount = max(1, left * step[2] // 100)
                with time_machine.travel(at, tick=False):
                    invoicing.credit_note_issue(
                        invoice=invoice, amount_minor=amount, description="Correction"
                    )
                row["credited"] += amount
                seen["credited while unpaid" if row["open"] else "credited once paid"] += 1
                if row["open"]:
                    row["open"] = row["total"] - row["credited"] > 0
                else:
                    credit += amount

        owed = sum(r["total"] - r["credited"] - r["paid"] for r in model.values() if r["open"])
        state = statement.account_statement(account=account)
        # The statement equals the test's ledger ...
        assert (state.amount_owed_minor, state.credit_balance_minor) == (owed, credit)
        assert sum(c.amount_minor - c.used_minor for c in state.credits) == credit
        for pk, row in model.items():
            f = state.by_id[pk]
            due = row["total"] - row["credited"] - row["paid"] if row["open"] else 0
            assert (f.total_minor, f.credited_minor, f.paid_minor, f.amount_due_minor) == (
                row["total"],
                row["credited"],
                row["paid"],
                due,
            )
            assert invoicing.amount_due(Invoice.objects.get(pk=pk)) == due  # the charge path
        # ... and so do the API, ...
        body = api.get(f"/api/v1/accounts/{slug}").json()
        assert (body["amount_owed"]["amount"], body["credit_balance"]["amount"]) == (owed, credit)
        listed = api.get(f"/api/v1/accounts/{slug}/invoices?limit=100").json()["results"]
        for item in listed:
            f = state.by_id[item["id"]]
            assert (
                item["amount_due"]["amount"],
                item["credited"]["amount"],
                item["amount_paid"]["amount"],
            ) == (f.amount_due_minor, f.credited_minor, f.paid_minor)
        # ... the page, ...
        overview = client.get(f"/billing/{slug}/").content.decode()
        assert f'<p class="amount {"bad-text" if owed else ""}">{money(owed)}</p>' in overview
        invoices_page = client.get(f"/billing/{slug}/invoices/").content.decode()
        if owed:
            assert f"{money(owed)} outstanding" in invoices_page
        if credit or state.credits:
            assert f'<p class="amount">{money(credit)}</p>' in invoices_page
        for pk in model:
            f = state.by_id[pk]
            if f.amount_due_minor:
                assert f"due {money(f.amount_due_minor)}" in invoices_page
                assert f"{f.number}: {money(f.amount_due_minor)}" in overview
        # ... the receipts, ...
        for pk, charged in receipts.items():
            number = state.by_id[pk].number
            (receipt,) = [m for m in mail.outbox if m.subject == f"Receipt for invoice {number}"]
            assert f"we received {money(charged)} for invoice {number}" in receipt.body
            assert "Amount due: $0.00" in receipt.body
        # ... and the PDFs.
        for pk in model:
            f = state.by_id[pk]
            text = pdf_text(client.get(f"/billing/{slug}/invoices/{pk}/pdf").content)
            assert "Amount due" in text and money(f.amount_due_minor) in text.split("Amount due")[1]
            for note in f.credit_notes:
                assert f"Credit note {note.number}" in text

    history()
    assert all(
        seen[case]
        for case in (
            "credit used",
            "charged net of credit notes",
            "credited while unpaid",
            "credited once paid",
        )
    ), seen


def money(amount_minor: int) -> str:
    return format_money(amount_minor, "USD")


def test_amount_due_arithmetic():
    due = statement.amount_due_minor
    args = {"kind": "invoice", "total_minor": 24988, "credited_minor": 4988, "paid_minor": 0}
    assert due(status="past_due", **args) == 20000
    assert due(status="uncollectible", **args) == 20000  # the debt stands
    assert due(status="paid", **args) == 0 and due(status="void", **args) == 0
    assert due(status="open", **{**args, "kind": "credit_note"}) == 0
    assert due(status="open", **{**args, "credited_minor": 30000}) == 0  # never below zero
    assert statement.settled_otherwise_minor(status="paid", **{**args, "paid_minor": 15000}) == 5000
    words = statement.credit_use_description(source_number="2026-000124", description="Outage")
    assert words == "Credit from 2026-000124: Outage"  # words only: the use is a CreditUse row
    assert AccountCredit  # the model the credit history reads
