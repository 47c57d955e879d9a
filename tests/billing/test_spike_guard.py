"""The daily anomaly check (billing.spike_guard, metering.guard): a spam wave on a weekday,
against the same weekdays, is held out of the close until someone releases or excludes it, or
14 days pass. Times are fixed instants, never today's date."""

import random
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from billing import spike_guard
from billing.models import Invoice, TicketDispute
from billing.run import run_billing
from metering import guard
from metering.models import Charge, SpikeGuard, UsageAnomaly, UsageDay, UsageHold
from outbox import services as outbox
from outbox.models import Event as OutboxEvent
from tests.billing.test_ticket_disputes import ticket_events
from tests.metering.helpers import ingest

OPENED = datetime(2026, 9, 1, tzinfo=UTC)  # a Tuesday: usage periods start on the 1st
SPIKE_DAY = datetime(2026, 11, 24, tzinfo=UTC)  # a Tuesday, a week before November closes
CHECKED = SPIKE_DAY + timedelta(hours=13)
USUAL = 40  # helpdesk tickets on a Tuesday
WAVE = 400
BASIC_BLOCK = 4000  # Basic: 300 included, then $40 per block of 100 (P2)


def at(moment):
    return time_machine.travel(moment, tick=False)


@pytest.fixture
def shop(make_account, partner):
    with at(OPENED):
        account = make_account(slug="shop", plan="basic")
        run_billing(as_of=OPENED)
    outbox.endpoint_create(partner=partner, url="https://hooks.example/in")
    return account


def usual_tuesdays(shop, weeks=9, units=USUAL):
    """The same weekdays before the spike, as the per-day counters hold them."""
    for k in range(1, weeks + 1):
        day = (SPIKE_DAY - timedelta(weeks=k)).date()
        period = datetime(day.year, day.month, 1, tzinfo=UTC)
        UsageDay.objects.create(
            account=shop,
            period_start=period,
            meter="helpdesk_tickets",
            day=day,
            status="final",
            units=units,
        )


def wave(shop, n=WAVE):
    """n tickets from n different senders between 08:00 and about 11:20 of the spike day."""
    events = []
    for i in range(n):
        events += ticket_events(
            f"W{i:03}", SPIKE_DAY + timedelta(hours=8, seconds=30 * i), requester=f"s{i}@x.example"
        )
    with at(CHECKED - timedelta(minutes=5)):
        for start in range(0, len(events), 1000):
            ingest(shop, events[start : start + 1000], now=CHECKED - timedelta(minutes=5))


def statuses(shop) -> dict[str, int]:
    rows = Charge.objects.filter(account=shop, meter="helpdesk_tickets", subject__startswith="W")
    counts: dict[str, int] = {}
    for status in rows.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_P2_a_spam_wave_on_a_tuesday_is_held_beyond_the_usual_tuesday(
    shop, django_capture_on_commit_callbacks
):
    usual_tuesdays(shop)
    wave(shop)
    with at(CHECKED), django_capture_on_commit_callbacks(execute=True):
        told = spike_guard.spike_guard_tick(as_of=CHECKED)
    assert told["anomalies"] == 1
    anomaly = UsageAnomaly.objects.get(account=shop)
    assert (anomaly.observed, anomaly.baseline, anomaly.weeks) == (WAVE, USUAL, 8)
    assert anomaly.status == "open" and anomaly.held == WAVE - USUAL
    # The first 40 of the day are the usual volume, billed; the rest wait.
    assert statuses(shop) == {"final": USUAL, "held": WAVE - USUAL}
    assert Charge.objects.get(account=shop, subject="W039").status == "final"
    assert Charge.objects.get(account=shop, subject="W040").status == "held"
    hold = UsageHold.objects.get(account=shop, subject="W040")
    assert hold.kind == "anomaly" and hold.meter == "helpdesk_tickets"
    assert hold.reason == (
        "Usage spike: 400 helpdesk tickets on Tue 24 Nov against a usual 40; held for review."
    )
    # Told once: one email, one webhook, however often the check runs again.
    [email] = mail.outbox
    assert email.subject == "Unusual usage held for review: helpdesk tickets"
    assert "The 360 over the usual are held for review, not billed." in email.body
    assert "released by themselves after 14 days" in email.body
    with at(CHECKED + timedelta(hours=1)), django_capture_on_commit_callbacks(execute=True):
        spike_guard.spike_guard_tick(as_of=CHECKED + timedelta(hours=1))
    assert len(mail.outbox) == 1
    detected = OutboxEvent.objects.filter(account=shop, type="usage.anomaly_detected")
    assert [e.data["held"] for e in detected] == [WAVE - USUAL]

    # The close bills what is not held: 40 + the usual month, within Basic's 300.
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))
    november = Invoice.objects.get(account=shop, reason="period_close", period_start__month=11)
    assert not [line for line in november.lines.all() if line.kind == "overage"]

    # Released after the close: billed on the next invoice as late usage (F6): 400 is one block.
    with at(datetime(2026, 12, 2, tzinfo=UTC)):
        spike_guard.anomaly_release(anomaly=anomaly)
    anomaly.refresh_from_db()
    assert anomaly.status == "released" and statuses(shop) == {"final": WAVE}
    assert OutboxEvent.objects.filter(account=shop, type="usage.anomaly_resolved").count() == 1
    with at(datetime(2027, 1, 1, tzinfo=UTC)):
        run_billing(as_of=datetime(2027, 1, 1, tzinfo=UTC))
    december = Invoice.objects.get(account=shop, reason="period_close", period_start__month=12)
    [late] = [line for line in december.lines.all() if line.kind == "late_usage"]
    assert late.amount_minor == BASIC_BLOCK and late.rules == ["F6", "P2"]
    # The line says why November's units come now: released after review, not late events.
    assert late.description == (
        "Usage released after review, helpdesk tickets, November 2026: 360 units"
    )


def test_excluded_held_units_are_never_billed_and_read_as_accepted_disputes(
    shop, django_capture_on_commit_callbacks
):
    usual_tuesdays(shop)
    wave(shop)
    with at(CHECKED), django_capture_on_commit_callbacks(execute=True):
        spike_guard.spike_guard_tick(as_of=CHECKED)
        anomaly = spike_guard.anomaly_exclude(anomaly=UsageAnomaly.objects.get(account=shop))
    assert anomaly.status == "excluded"
    assert statuses(shop) == {"final": USUAL, "excluded": WAVE - USUAL}
    disputes = TicketDispute.objects.filter(account=shop)
    assert disputes.count() == WAVE - USUAL
    assert set(disputes.values_list("status", "outcome")) == {("accepted", "excluded")}
    assert len(mail.outbox) == 1  # the anomaly's email; no email per excluded ticket
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))
    with at(datetime(2027, 1, 1, tzinfo=UTC)):
        run_billing(as_of=datetime(2027, 1, 1, tzinfo=UTC))
    lines = Invoice.objects.filter(account=shop).values_list("lines__kind", flat=True)
    assert "overage" not in lines and "late_usage" not in lines


def test_held_units_nobody_decides_on_are_released_after_14_days(shop):
    usual_tuesdays(shop)
    wave(shop, n=200)
    with at(CHECKED):
        spike_guard.spike_guard_tick(as_of=CHECKED)
    later = CHECKED + timedelta(days=14)
    with at(later):
        assert spike_guard.spike_guard_tick(as_of=later)["released"] == 200 - USUAL
    anomaly = UsageAnomaly.objects.get(account=shop)
    assert anomaly.status == "released" and anomaly.resolved_by == "automatically after 14 days"
    assert statuses(shop) == {"final": 200}


def test_alert_only_tells_and_bills(shop, django_capture_on_commit_callbacks):
    SpikeGuard.objects.create(account=shop, mode="alert_only")
    usual_tuesdays(shop)
    wave(shop)
    with at(CHECKED), django_capture_on_commit_callbacks(execute=True):
        spike_guard.spike_guard_tick(as_of=CHECKED)
    anomaly = UsageAnomaly.objects.get(account=shop)
    assert anomaly.status == "alerted" and anomaly.held == 0
    assert statuses(shop) == {"final": WAVE}
    [email] = mail.outbox
    assert "Your settings say alert only: they are billed." in email.body


def test_no_check_without_four_weeks_of_history(make_account):
    """An account opened two weeks before the wave has two Tuesdays of history: no check."""
    with at(SPIKE_DAY - timedelta(weeks=2)):
        young = make_account(slug="young", plan="basic")
    wave(young)
    with at(CHECKED):
        assert spike_guard.anomalies_check(as_of=CHECKED) == []
    assert statuses(young) == {"final": WAVE}


def test_a_day_is_an_anomaly_only_in_or_heading_into_overage():
    # 120 tickets by the 3rd of a 30-day month with 300 included: on pace for 1,200.
    assert guard.heading_into_overage(counted=120, included=300, elapsed=2.5 / 30)
    # The same 120 by the 28th: within the allowance, the spike costs nothing: no hold.
    assert not guard.heading_into_overage(counted=120, included=300, elapsed=27.5 / 30)
    assert guard.heading_into_overage(counted=301, included=300, elapsed=29.9 / 30)
    assert guard.heading_into_overage(counted=1, included=None, elapsed=0.5)  # no allowance


def test_the_threshold_is_the_larger_of_k_times_and_c_above_the_baseline():
    steady = [40, 42, 38, 41, 39, 40, 43, 37]
    assert guard.anomaly(observed=120, same_weekdays=steady, multiplier=3, margin=50) is None
    found = guard.anomaly(observed=121, same_weekdays=steady, multiplier=3, margin=50)
    assert found is not None and (found.baseline, found.excess, found.weeks) == (40, 81, 8)
    small = [2, 3, 2, 4, 3]  # a quiet account: + 50 is the bar, not × 3
    assert guard.anomaly(observed=53, same_weekdays=small, multiplier=3, margin=50) is None
    assert guard.anomaly(observed=54, same_weekdays=small, multiplier=3, margin=50) is not None
    assert guard.anomaly(observed=500, same_weekdays=[1, 1, 1], multiplier=3, margin=50) is None


# --- no false alarm: 8 weeks of a steady account with a weekly rhythm --------------------------


def steady_days(rng: random.Random, weeks: int) -> list[int]:
    """A helpdesk's day volumes: busy Mondays, quieter weekends, noise, slow growth."""
    rhythm = [140, 120, 115, 110, 100, 45, 30]  # Monday … Sunday
    days = []
    for n in range(weeks * 7):
        growth = 1 + 0.004 * n
        mean = rhythm[n % 7] * growth
        days.append(max(0, round(rng.gauss(mean, mean**0.5 * 1.5))))
    return days


def false_alarms(days: list[int], first_checked_week: int) -> int:
    alarms = 0
    for n in range(first_checked_week * 7, len(days)):
        history = [days[n - 7 * k] for k in range(1, guard.MAX_WEEKS + 1) if n - 7 * k >= 0]
        if guard.anomaly(observed=days[n], same_weekdays=history, multiplier=3, margin=50):
            alarms += 1
    return alarms


def test_no_false_alarm_over_8_weeks_of_steady_traffic_with_a_weekly_rhythm():
    """200 generated accounts, 8 weeks of warm-up then 8 weeks checked every day: 11,200 days
    with no anomaly opened. A real wave on one of those days is found."""
    total_days, alarms = 0, 0
    for seed in range(200):
        days = steady_days(random.Random(seed), weeks=16)
        alarms += false_alarms(days, first_checked_week=8)
        total_days += 8 * 7
    print(f"steady traffic: accounts=200, days_checked={total_days}, false_alarms={alarms}")
    assert alarms == 0
    days = steady_days(random.Random(7), weeks=16)
    days[12 * 7 + 1] += 500  # a spam wave on a Tuesday
    assert false_alarms(days, first_checked_week=8) == 1


def test_the_daily_check_on_a_steady_account_opens_nothing(shop):
    """The same rhythm through the real check: 8 weeks of history, then each day of a week."""
    rng = random.Random(3)
    days = steady_days(rng, weeks=9)
    start = date(2026, 9, 1)
    for n, units in enumerate(days):
        day = start + timedelta(days=n)
        UsageDay.objects.create(
            account=shop,
            period_start=datetime(day.year, day.month, 1, tzinfo=UTC),
            meter="helpdesk_tickets",
            day=day,
            status="final",
            units=units,
        )
    for n in range(8 * 7, 9 * 7):
        moment = datetime.combine(start + timedelta(days=n), datetime.min.time(), UTC)
        with at(moment + timedelta(hours=23)):
            assert spike_guard.anomalies_check(as_of=moment + timedelta(hours=23)) == []
    assert not UsageAnomaly.objects.exists()
