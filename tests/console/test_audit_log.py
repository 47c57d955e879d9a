"""The audit log: append-only in the database, written in the transaction of the change it
records, and cheap on the close path (one bulk insert per batch)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.errors import Conflict
from audit.models import AuditEntry
from audit.services import audit_record
from billing.invoicing import invoice_transition
from billing.models import Invoice
from billing.run import run_billing
from metering.limits import entitlements_expire
from metering.models import Entitlement, Feature

pytestmark = pytest.mark.django_db
NOV = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def entry(account):
    return audit_record(action="test.entry", obj=account, after="x", reason="why")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_the_database_refuses_update_and_delete(entry):
    for statement in [
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
        lambda: entry.save(),  # an UPDATE of an existing row
    ]:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            statement()
    with connection.cursor() as cursor, pytest.raises(DatabaseError), transaction.atomic():
        cursor.execute("UPDATE audit_auditentry SET reason = 'raw' WHERE id = %s", [entry.pk])
    entry.refresh_from_db()
    assert entry.reason == "why"


def test_a_change_that_rolls_back_leaves_no_audit_row(make_account):
    with time_machine.travel(NOV, tick=False):
        account = make_account(slug="shop")
        run_billing(as_of=NOV)
    invoice = Invoice.objects.get(account=account)
    before = AuditEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_transition(invoice=invoice, to="past_due", reason="declined")
        raise RuntimeError("the rest of the change failed")
    assert AuditEntry.objects.count() == before
    with pytest.raises(Conflict):  # a refused transition is not recorded either
        invoice_transition(invoice=invoice, to="draft")
    assert AuditEntry.objects.count() == before


def test_closing_many_periods_adds_one_audit_insert_per_batch(make_account):
    with time_machine.travel(NOV, tick=False):
        for n in range(6):
            make_account(slug=f"shop{n}")
        run_billing(as_of=NOV)  # the start invoices
    month_end = NOV + timedelta(days=30)
    with time_machine.travel(month_end, tick=False), CaptureQueriesContext(connection) as q:
        issued = run_billing(as_of=month_end)
    assert len(issued.invoices) == 6
    writes = [
        s["sql"]
        for s in q.captured_queries
        if 'INSERT INTO "audit_auditentry"' in s["sql"] or 'COPY "audit_auditentry"' in s["sql"]
    ]
    assert len(writes) == 1  # one COPY for the batch's rows, not a statement per invoice
    issued_rows = AuditEntry.objects.filter(action="invoice.issued", at=month_end)
    assert issued_rows.count() == 6
    assert {(r.source, r.before, r.after) for r in issued_rows} == {("system", "draft", "open")}


def test_state_changes_are_recorded_with_before_and_after(make_account):
    with time_machine.travel(NOV, tick=False):
        account = make_account(slug="shop")
        run_billing(as_of=NOV)
    invoice = Invoice.objects.get(account=account)
    invoice_transition(invoice=invoice, to="past_due", reason="declined", at=NOV)
    row = AuditEntry.objects.get(action="invoice.status")
    assert (row.object_label, row.before, row.after, row.reason) == (
        invoice.number,
        "open",
        "past_due",
        "declined",
    )
    assert row.account_id == account.pk


def test_entitlement_pauses_ending_are_recorded(account):
    until = timezone.now() - timedelta(minutes=1)
    Entitlement.objects.create(
        account=account, feature=Feature.AI_AGENTS, state="paused", until=until, reason="Z9"
    )
    assert entitlements_expire(as_of=timezone.now()) == 1
    row = AuditEntry.objects.get(action="entitlement.state")
    assert (row.object_label, row.before, row.after) == ("ai_agents", "paused", "active")
