"""Which account credit an invoice used is a CreditUse row, written where the credit is spent
(invoicing._apply_credits), never read back from a line's words: an operator's credit note
that reads "Credit from ..." changes no figure, and the migration's backfill links the credit
lines written before the rows existed, once.

Exact cents; times are fixed."""

import importlib
from dataclasses import replace
from decimal import Decimal

import pytest
from django.apps import apps

from billing import invoicing, payments, statement
from billing.models import AccountCredit, CreditUse, Invoice, InvoiceLine
from plans import pricing
from tests.billing.test_payments import OK
from tests.billing.test_statement import DAY, T0, card, emails_sent, issue

backfill = importlib.import_module("billing.migrations.0008_credituse").backfill_credit_uses


def credit_spent_twice(account, stripe_standin):
    """A paid invoice credited 1,500 (account credit), spent by the next two invoices: 1,000,
    then 500 of a 8,000 invoice left open."""
    card(account, stripe_standin, OK)
    first = issue(account, 6000)
    with emails_sent():
        payments.invoice_charge(invoice_id=first.pk, trigger="automatic")
    note = invoicing.credit_note_issue(invoice=first, amount_minor=1500, description="Outage")
    second = issue(account, 1000, at=T0 + 30 * DAY)
    third = issue(account, 8000, at=T0 + 60 * DAY)
    return note, second, third


def figures_of(account) -> tuple:
    """Every figure the statement states, in a form two statements can be compared by."""
    state = statement.account_statement(account=account)
    return (
        state.amount_owed_minor,
        state.credit_balance_minor,
        sorted(
            (f.number, f.total_minor, f.credit_applied_minor, f.credited_minor, f.amount_due_minor)
            for f in state.invoices
        ),
        [
            (
                c.source_number,
                c.remaining_minor,
                [(u.invoice_number, u.amount_minor) for u in c.uses],
            )
            for c in state.credits
        ],
    )


def test_spending_credit_writes_one_use_per_credit_line(account, stripe_standin):
    note, second, third = credit_spent_twice(account, stripe_standin)
    (credit,) = AccountCredit.objects.filter(account=account)
    uses = CreditUse.objects.filter(credit=credit).order_by("pk").select_related("line")
    assert [(u.invoice_id, u.amount_minor) for u in uses] == [(second.pk, 1000), (third.pk, 500)]
    for use in uses:
        assert use.line.invoice_id == use.invoice_id and use.line.kind == "credit"
        assert use.line.amount_minor == -use.amount_minor
        assert use.line.description == f"Credit from {note.number}: Outage"  # the words stay


@pytest.mark.django_db
def test_a_close_of_many_invoices_links_each_use_to_its_own_invoice_and_line(make_account):
    """invoices_issue writes the lines of every draft in one bulk insert: each use must land on
    its own draft's credit line, whatever the drafts before it held."""
    accounts = [make_account(slug=f"shop{n}") for n in range(3)]
    credits = {}
    for n, account in enumerate(accounts):
        source = issue(account, 100)  # any document of the account's: the credit's source
        credits[account.pk] = AccountCredit.objects.create(
            account=account,
            currency="USD",
            amount_minor=300 + n,
            remaining_minor=300 + n,
            source=source,
            description="Goodwill",
            created_at=T0,
        )
    period = pricing.Period(start=T0 + DAY, end=T0 + 31 * DAY)
    fee = pricing.Line(
        kind="plan_fee",
        description="Helpdesk fee",
        meter=None,
        quantity=1,
        unit_price_minor=Decimal(0),
        amount_minor=0,
        rules=("P1",),
        period_start=period.start,
        period_end=period.end,
    )
    drafts = [
        invoicing.InvoiceDraft(
            subscription=None,
            account_id=account.pk,
            currency="USD",
            reason="upgrade",
            period=period,
            # Different numbers of lines before the credit line, so positions differ.
            lines=[replace(fee, amount_minor=1000, unit_price_minor=Decimal(1000))] * (n + 1),
        )
        for n, account in enumerate(accounts)
    ]
    invoices = invoicing.invoices_issue(drafts=drafts, at=T0 + DAY)
    for n, (account, invoice) in enumerate(zip(accounts, invoices, strict=True)):
        (use,) = CreditUse.objects.filter(invoice=invoice).select_related("line")
        assert use.credit == credits[account.pk] and use.amount_minor == 300 + n
        assert (use.line.invoice_id, use.line.position, use.line.kind) == (
            invoice.pk,
            n + 2,
            "credit",
        )
        assert invoice.total_minor == 1000 * (n + 1) - (300 + n)


def test_an_operator_credit_note_that_reads_like_a_credit_use_changes_no_figure(
    account, stripe_standin
):
    note, second, third = credit_spent_twice(account, stripe_standin)
    before = figures_of(account)
    # Two operator notes on the open invoice, worded like lines that spend credit: one naming
    # the credit's own source document, one the year's first number.
    for description in (f"Credit from {note.number}: Goodwill", "Credit from 2026-000001: Sorry"):
        invoicing.credit_note_issue(invoice=third, amount_minor=1000, description=description)
    state = statement.account_statement(account=account)
    figures = state.by_id[third.pk]
    assert (figures.total_minor, figures.credit_applied_minor, figures.credited_minor) == (
        7500,
        500,
        2000,
    )
    assert figures.amount_due_minor == state.amount_owed_minor == 5500
    (credit,) = state.credits
    assert (credit.remaining_minor, credit.used_minor) == (0, 1500)
    assert [(u.invoice_number, u.amount_minor) for u in credit.uses] == [
        (second.number, 1000),
        (third.number, 500),
    ]
    for f in state.invoices:
        if f.kind == "credit_note":
            assert f.credit_applied_minor == 0 and f.credits_applied == ()
    # Every other figure is as it was: the notes moved only the invoice they credit.
    after = figures_of(account)
    assert (after[1], after[3]) == (before[1], before[3])
    others = {row[0] for row in before[2]} - {third.number}
    assert [r for r in after[2] if r[0] in others] == [r for r in before[2] if r[0] in others]


def test_the_backfill_links_an_old_credit_line_to_its_credit_once(account, stripe_standin):
    note, second, third = credit_spent_twice(account, stripe_standin)
    # An operator's note worded like a use, on an invoice: the backfill must leave it alone.
    invoicing.credit_note_issue(
        invoice=third, amount_minor=1000, description=f"Credit from {note.number}: Goodwill"
    )
    expected = figures_of(account)
    rows = list(CreditUse.objects.values_list("credit_id", "invoice_id", "line_id", "amount_minor"))
    # As the ledger stood before CreditUse: the credit lines' words only.
    CreditUse.objects.all().delete()
    assert figures_of(account) != expected
    assert InvoiceLine.objects.filter(kind="credit", invoice__kind="invoice").count() == 2

    assert backfill(apps, None) == 2
    assert sorted(
        CreditUse.objects.values_list("credit_id", "invoice_id", "line_id", "amount_minor")
    ) == sorted(rows)
    assert figures_of(account) == expected
    assert backfill(apps, None) == 0  # run again: nothing more
    assert CreditUse.objects.count() == 2
    assert not Invoice.objects.filter(kind="credit_note", credit_uses__isnull=False).exists()


def test_the_statement_reads_the_uses_in_one_query_whatever_their_number(
    account, stripe_standin, django_assert_num_queries
):
    note, _, _ = credit_spent_twice(account, stripe_standin)
    # Invoices, credit notes, cards, charges, credit uses, refunds, credits.
    with django_assert_num_queries(7):
        statement.account_statement(account=account)
    paid = note.credited_invoice
    invoicing.credit_note_issue(invoice=paid, amount_minor=4000, description="Again")
    for n in range(3):
        issue(account, 700, at=T0 + (90 + n) * DAY)
    assert CreditUse.objects.count() == 5
    with django_assert_num_queries(7):
        statement.account_statement(account=account)
