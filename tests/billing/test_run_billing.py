"""run_billing on PostgreSQL with time travel: first invoices, period closes, changes, races."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from billing.invoicing import InvalidTransition, invoice_transition
from billing.models import Invoice, InvoiceStatusChange, UsageClose
from billing.run import run_billing
from plans.models import Plan, ScheduledChange, Subscription
from tests.metering.helpers import ingest

T0 = datetime(2026, 1, 31, 10, tzinfo=UTC)


@pytest.fixture
def opened(make_account):
    """Open an account at a given instant (not migrated: it pays its first fees)."""

    def open_at(at, **kwargs):
        with time_machine.travel(at, tick=False):
            return make_account(**kwargs)

    return open_at


def tickets(n: int, at: datetime) -> list[dict]:
    events = []
    for i in range(n):
        when = at + timedelta(minutes=i)
        events += [
            {
                "id": f"{at:%m%d}-{i}-c",
                "type": "message",
                "ticket": f"{at:%m%d}-{i}",
                "occurred_at": when,
                "channel": "email",
                "author": "customer",
            },
            {
                "id": f"{at:%m%d}-{i}-a",
                "type": "message",
                "ticket": f"{at:%m%d}-{i}",
                "occurred_at": when + timedelta(seconds=30),
                "channel": "email",
                "author": "agent",
            },
        ]
    return events


def ingest_many(account, events, now):
    for start in range(0, len(events), 1000):
        ingest(account, events[start : start + 1000], now=now)


def lines_of(invoice):
    return [(line.kind, line.amount_minor, tuple(line.rules)) for line in invoice.lines.all()]


def test_P1_the_first_invoice_carries_the_first_periods_fees(opened):
    account = opened(T0, slug="shop", plan="basic")
    run = run_billing(as_of=T0)
    [invoice] = Invoice.objects.filter(account=account)
    assert run.invoices == [invoice.pk]
    assert invoice.reason == "subscription_start" and invoice.status == "open"
    assert invoice.number == "2026-000001" and invoice.total_minor == 6000
    assert invoice.period_start == T0 and invoice.period_end == datetime(
        2026, 2, 28, 10, tzinfo=UTC
    )


def test_P1_a_migrated_customer_is_not_billed_again_for_the_current_period(make_account):
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop", period_start=T0 - timedelta(days=10))
    assert run_billing(as_of=T0).invoices == []


def test_P2_seed_000_basic_with_500_tickets_costs_14000_cents_for_the_month(opened):
    account = opened(T0, slug="shop", plan="basic")
    run_billing(as_of=T0)
    ingest_many(account, tickets(500, T0 + timedelta(days=3)), now=T0 + timedelta(days=4))
    close_at = datetime(2026, 2, 28, 10, tzinfo=UTC)
    run_billing(as_of=close_at)
    invoice = Invoice.objects.get(account=account, reason="period_close")
    overage = [line for line in invoice.lines.all() if line.kind == "overage"]
    assert [(o.quantity, o.amount_minor) for o in overage] == [(2, 8000)]  # 2 blocks of 100
    fees = [line for line in invoice.lines.all() if line.kind == "plan_fee"]
    assert [f.amount_minor for f in fees] == [6000]  # next month, in advance (P1)
    assert invoice.total_minor == 14000
    assert invoice.period_start == T0 and invoice.period_end == close_at


def test_a_year_of_monthly_cycles_anchored_on_jan_31(opened):
    account = opened(T0, slug="shop", plan="basic")
    for day in range(0, 366, 3):
        run_billing(as_of=T0 + timedelta(days=day))
    run_billing(as_of=datetime(2027, 1, 31, 10, tzinfo=UTC))
    closes = Invoice.objects.filter(account=account, reason="period_close").order_by("period_start")
    assert [i.period_start.date().isoformat() for i in closes] == [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
        "2026-11-30",
        "2026-12-31",
    ]
    assert {i.total_minor for i in closes} == {6000}
    by_year: dict[str, list[int]] = {}
    for number in Invoice.objects.order_by("number").values_list("number", flat=True):
        year, sequence = number.split("-")
        by_year.setdefault(year, []).append(int(sequence))
    # numbered without gaps, restarting each year (the Nov 30 close is issued in January)
    assert by_year == {"2026": list(range(1, 12)), "2027": [1, 2]}
    subscription = Subscription.objects.get(account=account)
    assert subscription.current_period_start == datetime(2027, 1, 31, 10, tzinfo=UTC)


def test_running_again_changes_nothing(opened):
    account = opened(T0, slug="shop")
    as_of = datetime(2026, 3, 31, 10, tzinfo=UTC)
    first = run_billing(as_of=as_of)
    assert len(first.invoices) == 3  # start, Jan 31 → Feb 28, Feb 28 → Mar 31
    assert run_billing(as_of=as_of).invoices == []
    assert Invoice.objects.filter(account=account).count() == 3


def test_P7_a_downgrade_requested_mid_cycle_takes_effect_exactly_at_the_period_end(opened):
    account = opened(T0, slug="shop", plan="pro")
    subscription = Subscription.objects.get(account=account)
    end = subscription.current_period_end
    ScheduledChange.objects.create(
        subscription=subscription, plan=Plan.objects.get(code="basic"), effective_at=end
    )
    run_billing(as_of=end - timedelta(seconds=1))
    subscription.refresh_from_db()
    assert subscription.plan.code == "pro"
    run_billing(as_of=end)
    subscription.refresh_from_db()
    assert subscription.plan.code == "basic"
    close = Invoice.objects.get(account=account, reason="period_close")
    assert [(line.kind, line.amount_minor) for line in close.lines.all()] == [("plan_fee", 6000)]
    assert ScheduledChange.objects.get().status == "applied"


def test_F6_late_usage_of_a_closed_period_goes_on_the_next_invoice(opened):
    account = opened(T0, slug="shop", plan="starter")  # 50 included, 40 cents per extra ticket
    feb = datetime(2026, 2, 28, 10, tzinfo=UTC)
    ingest_many(account, tickets(50, T0 + timedelta(days=1)), now=T0 + timedelta(days=2))
    run_billing(as_of=feb)
    # three tickets of January arrive in March
    ingest(account, tickets(3, T0 + timedelta(days=5, hours=1)), now=feb + timedelta(days=2))
    run_billing(as_of=datetime(2026, 3, 31, 10, tzinfo=UTC))
    march = Invoice.objects.get(account=account, reason="period_close", period_start=feb)
    late = [line for line in march.lines.all() if line.kind == "late_usage"]
    assert [(line.quantity, line.amount_minor) for line in late] == [(3, 120)]
    assert "F6" in late[0].rules and "late usage" in march.note.lower()
    assert UsageClose.objects.get(period_start=T0).billed_units["helpdesk_tickets"] == 53


def test_F5_a_paid_invoice_never_moves_back_and_every_move_is_audited(opened):
    opened(T0, slug="shop")
    run_billing(as_of=T0)
    invoice = Invoice.objects.get()
    invoice_transition(invoice=invoice, to="past_due", reason="card declined")
    invoice_transition(invoice=invoice, to="paid", reason="retry succeeded")
    with pytest.raises(InvalidTransition):
        invoice_transition(invoice=invoice, to="past_due")
    assert list(InvoiceStatusChange.objects.values_list("from_status", "to_status")) == [
        ("draft", "open"),
        ("open", "past_due"),
        ("past_due", "paid"),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_issue_exactly_one_invoice_per_period(make_account):
    with time_machine.travel(T0, tick=False):
        for n in range(8):
            make_account(slug=f"shop-{n}")
    as_of = datetime(2026, 2, 28, 10, tzinfo=UTC)
    errors = []

    def run():
        try:
            run_billing(as_of=as_of)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Invoice.objects.filter(reason="period_close").count() == 8
    assert Invoice.objects.filter(reason="subscription_start").count() == 8
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"2026-{n:06d}" for n in range(1, 17)]
