"""Annual cycles (P1, P4), Enterprise terms per account, credit notes (F5), the command."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from accounts import services as account_services
from audit.models import AuditEntry
from billing.invoicing import credit_note_issue
from billing.models import Invoice
from billing.run import run_billing
from plans import services as plan_services
from plans.models import Allowance, Plan, Price
from tests.metering.helpers import ingest

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def calls(n: int, at: datetime, tag: str) -> list[dict]:
    return [
        {
            "id": f"{tag}-{i}",
            "type": "call",
            "ticket": f"{tag}-{i}",
            "channel": "phone",
            "occurred_at": at + timedelta(minutes=i),
            "direction": "inbound",
            "outcome": "answered",
        }
        for i in range(n)
    ]


def test_P4_annual_monthly_closes_carry_usage_only_and_voice_comes_at_the_cycle_end(make_account):
    with time_machine.travel(T0, tick=False):
        account = make_account(
            slug="shop", plan="basic", interval="year", addons=[("voice", "voice-20")]
        )
    run_billing(as_of=T0)
    start = Invoice.objects.get(reason="subscription_start")
    assert start.total_minor == 60000 + 30000  # annual Basic and annual Voice, 10 × monthly (P1)
    # 30 voice tickets in March: 10 over March's 20, but on an annual cycle they wait (P4)
    ingest(
        account,
        calls(30, datetime(2026, 3, 10, tzinfo=UTC), "mar"),
        now=datetime(2026, 3, 11, tzinfo=UTC),
    )
    for month in range(2, 13):
        run_billing(as_of=datetime(2026, month, 1, tzinfo=UTC))
    monthly = Invoice.objects.filter(reason="period_close").order_by("period_start")
    assert monthly.count() == 11 and {i.total_minor for i in monthly} == {
        0
    }  # no fees, no voice yet
    assert {i.status for i in monthly} == {"paid"}  # nothing to pay: settled as issued
    run_billing(as_of=datetime(2027, 1, 1, tzinfo=UTC))
    cycle_end = Invoice.objects.get(
        reason="period_close", period_start=datetime(2026, 12, 1, tzinfo=UTC)
    )
    kinds = {(line.kind, line.amount_minor) for line in cycle_end.lines.all()}
    assert ("overage", 1500) in kinds  # 10 voice tickets × 1.50 $, at the cycle's end (P4)
    assert ("plan_fee", 60000) in kinds and ("addon_fee", 30000) in kinds  # next year in advance
    voice = next(line for line in cycle_end.lines.all() if line.kind == "overage")
    assert "P4" in voice.rules


def test_enterprise_is_billed_on_the_accounts_own_terms(catalog, partner):
    account = account_services.account_create(
        slug="bigco", name="BigCo", billing_email="ap@bigco.example", partner=partner
    )
    enterprise = Plan.objects.get(code="enterprise")
    Price.objects.create(
        plan=enterprise,
        account=account,
        currency="USD",
        interval="month",
        unit_amount_minor=Decimal("250000"),
    )
    Price.objects.create(
        plan=enterprise,
        account=account,
        currency="USD",
        interval="month",
        component="overage",
        unit_amount_minor=Decimal("3000"),
    )
    Allowance.objects.create(
        plan=enterprise,
        account=account,
        meter="helpdesk_tickets",
        included=20000,
        overage_mode="per_block",
        block_size=1000,
    )
    with time_machine.travel(T0, tick=False):
        plan_services.subscription_create(account=account, offer=enterprise, interval="month")
    run_billing(as_of=T0)
    assert Invoice.objects.get(account=account).total_minor == 250000


def test_F5_a_correction_is_a_numbered_credit_note_never_an_edit(make_account):
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop", plan="basic")
    run_billing(as_of=T0)
    invoice = Invoice.objects.get()
    with time_machine.travel(T0 + timedelta(days=5), tick=False):  # credited in the same year
        note = credit_note_issue(
            invoice=invoice, amount_minor=2500, description="Goodwill: outage on Jan 3"
        )
    assert note.kind == "credit_note" and note.total_minor == -2500
    assert note.number == "2026-000002" and note.credited_invoice == invoice
    invoice.refresh_from_db()
    assert invoice.total_minor == 6000  # the invoice itself is untouched
    with pytest.raises(Exception, match="between 1 and 3500"):
        credit_note_issue(invoice=invoice, amount_minor=4000, description="too much")


def test_run_billing_command_reports_what_it_did(make_account):
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop")
    out = StringIO()
    call_command("run_billing", "--as-of", "2026-02-01T00:00:00Z", stdout=out)
    assert "2 invoices issued" in out.getvalue()
    again = StringIO()
    call_command("run_billing", "--as-of", "2026-02-01T00:00:00Z", stdout=again)
    assert "0 invoices issued" in again.getvalue()


def test_credit_invoice_command(make_account):
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop", plan="basic")
    run_billing(as_of=T0)
    out = StringIO()
    with time_machine.travel(T0 + timedelta(days=5), tick=False):  # credited in the same year
        call_command(
            "credit_invoice",
            "--number",
            "2026-000001",
            "--amount-minor",
            "1000",
            "--description",
            "Goodwill credit for the outage",
            "--reason",
            "Ticket 4411: the account manager agreed",
            stdout=out,
        )
    assert "Credit note 2026-000002 for 1000 minor units of USD." in out.getvalue()
    # The customer reads the description; the reason goes to the audit log only.
    note = Invoice.objects.get(number="2026-000002")
    assert note.description == "Goodwill credit for the outage"
    assert [line.description for line in note.lines.all()] == ["Goodwill credit for the outage"]
    entry = AuditEntry.objects.get(action="command.credit_note")
    assert entry.reason == "Ticket 4411: the account manager agreed"
    assert entry.object_label == "2026-000001"
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="No invoice"):
        call_command(
            "credit_invoice",
            *("--number", "1999-1", "--amount-minor", "1", "--description", "x", "--reason", "x"),
        )
