"""The close reads through indexes, whatever the size of the tables behind it (issue 28): a
batch's usage from its period's month alone, by the (account, period start, meter) index; the
due subscriptions by their own partial index; the late-usage history by subscription. The plans
are PostgreSQL's, read by EXPLAIN after a few thousand rows and ANALYZE: a plan that scans a
whole table is cheap on a small one and grows with it.
"""

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection

from accounts.models import Account
from billing.closing import claim
from billing.closing.price import final_units_statement, units_by_period
from billing.closing.tallies import periods_moved, periods_moved_statement
from billing.models import Invoice, UsageClose
from billing.spike_guard import busy_meters
from metering import event_store, partitions
from metering.models import PeriodTally, UsageDay
from plans.models import Plan, Subscription

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's plans (the demo's SQLite has none)"
)

PERIOD = datetime(2026, 11, 1, tzinfo=UTC)
EARLIER = datetime(2026, 10, 1, tzinfo=UTC)
INDEXED = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}
# Account ids far from any the test database hands out.
FAR = 10**9


def accounts(count: int) -> None:
    Account.objects.bulk_create(
        [
            Account(pk=FAR + n, slug=f"far-{n}", name=f"Far {n}", billing_email="b@far.example")
            for n in range(count)
        ],
        batch_size=2000,
    )


def plan_nodes(plan: dict) -> list[dict]:
    found, stack = [], [plan["Plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", ()))
        found.append(node)
    return found


def explain(sql: str, params: list) -> list[dict]:
    ((plan,),) = event_store.statement_run("EXPLAIN (FORMAT JSON) " + sql, params)
    return plan_nodes(plan[0])


def explain_queryset(queryset) -> list[dict]:
    return plan_nodes(json.loads(queryset.explain(format="json"))[0])


def analyze(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {table}")


@pytest.fixture
def usage_two_months():
    """A shop with a few hundred units in each of two months, beside a big account with
    thousands: the close of the shop's November must read neither October nor the big
    account's rows."""
    partitions.partitions_ensure(now=PERIOD)
    accounts(3)
    rows = []
    for account_id, units in ((FAR + 1, 300), (FAR + 2, 6000)):
        for month in (EARLIER, PERIOD):
            for n in range(units):
                at = month + timedelta(minutes=n)
                subject = (account_id, "ticket", f"T-{month:%m}-{n}")
                rows.append(
                    (*subject, "helpdesk_tickets", 1, "final", at, None, month, ["H1"], at, at)
                )
    event_store.insert_charges(rows)
    analyze("metering_charge")


@pytest.mark.django_db
def test_a_batch_usage_is_read_from_its_month_by_the_usage_index(usage_two_months):
    nodes = explain(*final_units_statement({PERIOD: {FAR + 1}}))
    read = {node["Relation Name"] for node in nodes if "Relation Name" in node}
    assert read == {"metering_charge_p2026_11"}, read  # October's partition is pruned
    assert any(
        node["Node Type"] in INDEXED
        and node["Index Name"].endswith("account_id_period_start_meter_idx")
        for node in nodes
    ), [node["Node Type"] for node in nodes]
    assert not any(node["Node Type"] == "Seq Scan" for node in nodes)
    # And what it reads is the shop's month: 300 units, not 600, not 6,300.
    assert units_by_period([(FAR + 1, PERIOD)]) == {(FAR + 1, PERIOD): {"helpdesk_tickets": 300}}


@pytest.fixture
def subscriptions_mostly_not_due(catalog):
    """2,000 live subscriptions, 20 of them due, and 2,000 ended ones: the close's due
    question must not read them all."""
    plan = Plan.objects.get(code="basic")
    accounts(4000)
    made = []
    for n in range(4000):
        due = n < 20
        end = PERIOD if due else PERIOD + timedelta(days=30)
        start = end - timedelta(days=30)
        made.append(
            Subscription(
                account_id=FAR + n,
                plan=plan,
                interval="month",
                billing_anchor=start,
                started_at=start,
                current_period_start=start,
                current_period_end=end,
                usage_period_start=start,
                usage_period_end=end,
                ended_at=start + timedelta(days=1) if n >= 2000 else None,
            )
        )
    Subscription.objects.bulk_create(made, batch_size=2000)
    analyze("plans_subscription", "billing_closesetaside")
    return made


@pytest.mark.django_db
def test_the_due_subscriptions_are_found_by_their_partial_index(subscriptions_mostly_not_due):
    nodes = explain_queryset(claim._due_closes(PERIOD))
    on_subscriptions = [n for n in nodes if n.get("Relation Name") == "plans_subscription"]
    assert [n["Node Type"] for n in on_subscriptions] in (["Index Scan"], ["Bitmap Heap Scan"])
    assert any(n.get("Index Name") == "subscription_close_due_idx" for n in nodes), nodes
    assert claim._due_closes(PERIOD).count() == 20


@pytest.mark.django_db
def test_the_late_usage_history_is_read_by_subscription(subscriptions_mostly_not_due):
    """Twelve closes behind each of 500 subscriptions: a batch of 20 reads its own."""
    live = subscriptions_mostly_not_due[:500]
    invoices = Invoice.objects.bulk_create(
        [
            Invoice(
                account_id=s.account_id,
                subscription=s,
                currency="USD",
                total_minor=0,
                period_start=PERIOD - timedelta(days=31 * (month + 1)),
                period_end=PERIOD - timedelta(days=31 * month),
            )
            for s in live
            for month in range(12)
        ],
        batch_size=2000,
    )
    UsageClose.objects.bulk_create(
        [
            UsageClose(
                subscription=subscription,
                period_start=PERIOD - timedelta(days=31 * (month + 1)),
                period_end=PERIOD - timedelta(days=31 * month),
                closed_at=PERIOD,
                invoice=invoices[n * 12 + month],
                billed_units={},
            )
            for n, subscription in enumerate(live)
            for month in range(12)
        ],
        batch_size=2000,
    )
    analyze("billing_usageclose")
    batch = [s.pk for s in live[:20]]
    nodes = explain_queryset(UsageClose.objects.filter(subscription_id__any=batch))
    reads = [n for n in nodes if n.get("Relation Name") == "billing_usageclose"]
    assert reads and all(n["Node Type"] in {"Index Scan", "Bitmap Heap Scan"} for n in reads)
    assert UsageClose.objects.filter(subscription_id__any=batch).count() == 240


@pytest.fixture
def counters_for_months(subscriptions_mostly_not_due):
    """Per-day counters of 200 accounts over 120 days: the spike guard's look at two of them
    must not read the other 118."""
    start = PERIOD - timedelta(days=120)
    UsageDay.objects.bulk_create(
        [
            UsageDay(
                account_id=FAR + n,
                period_start=datetime.combine(day.replace(day=1), time.min, tzinfo=UTC),
                meter="helpdesk_tickets",
                day=day,
                status="final",
                units=10,
                folded=True,
            )
            for n in range(200)
            for day in (start.date() + timedelta(days=k) for k in range(120))
        ],
        batch_size=5000,
    )
    analyze("metering_usageday")


@pytest.mark.django_db
def test_the_spike_guard_reads_the_last_days_by_the_day_index(counters_for_months):
    today = PERIOD.date() - timedelta(days=1)
    targets = (today, today - timedelta(days=1))
    live = Subscription.objects.filter(ended_at__isnull=True)
    nodes = explain_queryset(busy_meters(live, targets))
    assert any(n.get("Index Name") == "usageday_day_idx" for n in nodes), nodes
    on_counters = [n for n in nodes if n.get("Relation Name") == "metering_usageday"]
    assert on_counters and all(n["Node Type"] != "Seq Scan" for n in on_counters)
    # Ten units a day is under any account's margin: nothing is busy.
    assert list(busy_meters(live, targets)) == []


@pytest.mark.django_db
def test_the_moved_periods_are_read_by_their_partial_index_alone():
    """Two years of counted tallies for 500 accounts, three of them stale or uncounted: the
    close's first question reads those three, not the 12,000 others."""
    months = [partitions.month_add(PERIOD, -n) for n in range(1, 25)]
    PeriodTally.objects.bulk_create(
        [
            PeriodTally(
                account_id=FAR + n, period_start=month, units={"helpdesk_tickets": 1}, stale=False
            )
            for n in range(500)
            for month in months
        ],
        batch_size=5000,
    )
    PeriodTally.objects.filter(account_id=FAR, period_start=months[0]).update(stale=True)
    PeriodTally.objects.filter(account_id=FAR + 1, period_start=months[5]).update(units=None)
    PeriodTally.objects.create(account_id=FAR + 2, period_start=PERIOD)  # the open period's
    analyze("metering_periodtally")

    nodes = explain(*periods_moved_statement(FAR + n for n in range(500)))
    on_tallies = [n for n in nodes if n.get("Relation Name") == "metering_periodtally"]
    assert on_tallies and all(n.get("Index Name") == "periodtally_moved_idx" for n in on_tallies)
    # The open period is the one being closed, not an earlier one that moved.
    assert periods_moved({FAR + n: PERIOD for n in range(500)}) == {
        (FAR, months[0]),
        (FAR + 1, months[5]),
    }
