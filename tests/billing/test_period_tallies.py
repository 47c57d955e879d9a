"""F6 with period tallies: a close counts again only the earlier periods whose final units may
have changed since they were last counted (metering.PeriodTally, billing.closing.tallies),
and late usage is still billed once, by the first close after the fold that saw it. Fixed
instants: nothing here depends on today's date."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from billing import closing
from billing.closing import claim, tallies
from billing.models import Invoice, UsageClose
from billing.run import run_billing
from metering.models import PeriodTally
from metering.services import usage_days_fold
from plans import periods
from tests.billing.charges import counted
from tests.billing.pages_fixtures import T0, account  # noqa: F401
from tests.billing.test_money_safety import in_threads

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the SQLite demo counts every period each time"
)

DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)
FEB = datetime(2027, 2, 1, tzinfo=UTC)
BASIC_BLOCK = 4000  # Basic: 300 tickets included, then $40 per block of 100 (P2)


def billing_at(moment):
    with time_machine.travel(moment, tick=False):
        return run_billing(as_of=moment)


def late_lines(shop, period_start):
    [close] = Invoice.objects.filter(account=shop, reason="period_close", period_start=period_start)
    return [
        (line.period_start, line.amount_minor)
        for line in close.lines.all()
        if line.kind == "late_usage"
    ]


def november_closed(shop) -> None:
    """350 November tickets (one block over Basic's 300), closed on Dec 1."""
    counted(shop, "helpdesk_tickets", 350, T0 + timedelta(days=3))
    billing_at(DEC)


def late_november(shop) -> None:
    """60 November tickets counted late, on Dec 3: 410, two blocks, one more than billed."""
    counted(
        shop,
        "helpdesk_tickets",
        60,
        T0 + timedelta(days=20),
        recorded_at=DEC + timedelta(days=2),
    )


@pytest.fixture
def recounted(monkeypatch):
    """The periods each close counted from their charges, in order."""
    seen: list[set] = []
    count = tallies.units_by_period

    def spy(pairs):
        seen.append({start for _, start in pairs})
        return count(pairs)

    monkeypatch.setattr(tallies, "units_by_period", spy)
    return seen


@pytest.mark.django_db
def test_F6_an_earlier_period_nothing_changed_in_is_not_counted_again(account, recounted):  # noqa: F811
    november_closed(account)
    tally = PeriodTally.objects.get(account_id=account.pk, period_start=T0)
    assert (tally.units, tally.stale) == ({"helpdesk_tickets": 350}, False)

    counted(account, "helpdesk_tickets", 20, DEC + timedelta(days=2))
    billing_at(JAN)

    # December's close counted December alone: November's tally was fresh.
    assert recounted[-1] == {DEC}
    assert late_lines(account, DEC) == []


@pytest.mark.django_db
def test_F6_a_late_unit_marks_its_period_stale_and_is_billed_once(account, recounted):  # noqa: F811
    november_closed(account)
    late_november(account)

    billing_at(JAN)

    assert recounted[-1] == {DEC, T0}  # the fold marked November stale; it was counted again
    assert late_lines(account, DEC) == [(T0, BASIC_BLOCK)]
    tally = PeriodTally.objects.get(account_id=account.pk, period_start=T0)
    assert (tally.units, tally.stale) == ({"helpdesk_tickets": 410}, False)

    billing_at(FEB)

    assert recounted[-1] == {JAN}  # November and December fresh again
    assert late_lines(account, JAN) == []


@pytest.fixture
def histories_read(monkeypatch):
    """Per close run, the earlier closes it read, by period start."""
    seen: list[list] = []
    read = claim.close_histories

    def spy(subscriptions, *, moved):
        histories = read(subscriptions, moved=moved)
        seen.append(sorted(c.period_start for cs in histories.closes.values() for c in cs))
        return histories

    monkeypatch.setattr(claim, "close_histories", spy)
    return seen


@pytest.mark.django_db
def test_F6_a_close_reads_only_the_earlier_closes_whose_period_moved(account, histories_read):  # noqa: F811
    november_closed(account)
    counted(account, "helpdesk_tickets", 20, DEC + timedelta(days=2))
    billing_at(JAN)
    assert histories_read[-1] == []  # November's tally fresh: its close is not even read

    late_november(account)  # a late November (and nothing late in December)
    billing_at(FEB)
    assert histories_read[-1] == [T0]
    assert late_lines(account, JAN) == [(T0, BASIC_BLOCK)]


@pytest.mark.django_db
def test_P4_an_annual_close_reads_its_cycles_months_alone_and_prices_them_at_the_end(
    make_account, histories_read
):
    """Nothing moved: an annual subscription's close reads the running cycle's earlier months
    (P4 rates them at the cycle's end), nothing else; and the cycle's end still bills the
    first month's calls over Voice 20."""
    with time_machine.travel(T0, tick=False):
        shop = make_account(
            slug="yearly", plan="basic", interval="year", addons=[("voice", "voice-20")]
        )
        run_billing(as_of=T0)
    counted(shop, "voice_tickets", 30, T0 + timedelta(days=3))  # 10 over Voice 20
    months = [periods.add_months(T0, n) for n in range(13)]
    for month in months[1:4]:
        billing_at(month)
    assert histories_read[-1] == months[:2]  # closing January: November and December

    for month in months[4:]:
        billing_at(month)
    [cycle_end] = Invoice.objects.filter(
        account=shop, reason="period_close", period_start=months[11]
    )
    overage = [
        (line.meter, line.quantity) for line in cycle_end.lines.all() if line.kind == "overage"
    ]
    assert ("voice_tickets", 10) in overage


@pytest.mark.django_db
def test_F6_a_close_stored_by_any_way_gets_a_tally_to_be_counted(account):  # noqa: F811
    """Every closed period has a tally: a close inserted without one (restored from a dump,
    written by hand) gets a stale one, so the next close counts that period again."""
    november_closed(account)
    close = UsageClose.objects.get(subscription__account=account, period_start=T0)
    UsageClose.objects.filter(pk=close.pk).delete()
    PeriodTally.objects.filter(account_id=account.pk).delete()

    close.pk = None
    close.save(force_insert=True)

    tally = PeriodTally.objects.get(account_id=account.pk, period_start=T0)
    assert (tally.units, tally.stale) == (None, True)
    late_november(account)
    billing_at(JAN)
    assert late_lines(account, DEC) == [(T0, BASIC_BLOCK)]
    tally.refresh_from_db()
    assert (tally.units, tally.stale) == ({"helpdesk_tickets": 410}, False)


@pytest.mark.django_db
def test_F6_a_change_after_the_closes_fold_is_billed_by_the_next_close_once(
    account,  # noqa: F811
    monkeypatch,
):
    """A change committed after the fold that starts the closes, before a close counts, is not
    in that close's tallies: the next run's fold marks it, and the next close bills it, once."""
    november_closed(account)
    late_november(account)

    with monkeypatch.context() as later, time_machine.travel(JAN, tick=False):
        later.setattr(claim, "usage_days_fold", lambda: 0)  # folded just before these 60 came
        closing.close_all(as_of=JAN)

    assert late_lines(account, DEC) == []
    assert PeriodTally.objects.get(account_id=account.pk, period_start=T0).stale is False

    billing_at(FEB)

    assert late_lines(account, JAN) == [(T0, BASIC_BLOCK)]
    billing_at(datetime(2027, 3, 1, tzinfo=UTC))
    assert late_lines(account, FEB) == []


@pytest.mark.django_db
def test_F6_a_change_after_the_run_tick_is_counted_by_the_closes_fold(account):  # noqa: F811
    """What changes between the run's metering tick and its closes (a hold the spike guard
    releases, a unit re-evaluated meanwhile) is folded when the closes start: billed now."""
    november_closed(account)
    late_november(account)

    with time_machine.travel(JAN, tick=False):
        closing.close_all(as_of=JAN)  # no metering tick before it

    assert late_lines(account, DEC) == [(T0, BASIC_BLOCK)]


@pytest.mark.django_db(transaction=True)
def test_F6_folds_beside_the_closes_never_deadlock_and_late_units_are_billed_once(make_account):
    """Two runs closing and two folds marking, at once, on the same accounts' tallies: both
    take them in (account, period) order, so none waits for another in a cycle; each account's
    late November is billed once, by January's close or February's."""
    with time_machine.travel(T0, tick=False):
        shops = [make_account(slug=f"shop-{n}", plan="basic") for n in range(6)]
        run_billing(as_of=T0)
    for shop in shops:
        counted(shop, "helpdesk_tickets", 350, T0 + timedelta(days=3))
    billing_at(DEC)
    for shop in shops:
        late_november(shop)

    def work(i):
        if i < 2:
            return run_billing(as_of=JAN)
        return [usage_days_fold() for _ in range(5)]

    with time_machine.travel(JAN, tick=False):
        results = in_threads(4, work)
    assert not [r for r in results if isinstance(r, Exception)], results
    billing_at(FEB)

    for shop in shops:
        late = Invoice.objects.filter(account=shop, lines__kind="late_usage")
        assert late.count() == 1, shop.slug
        assert sum(line for _, line in late_lines(shop, DEC) + late_lines(shop, JAN)) == BASIC_BLOCK
