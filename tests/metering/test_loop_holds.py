"""The loop detector (metering.holds, metering.guard): a burst of tickets from one requester or
on one subject, or automated mail answered only by a rule, is held, not billed, until released.
Times are fixed instants, never today's date."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metering import services
from metering.models import Charge, SpikeGuard, TicketOrigin, UsageHold
from tests.metering.helpers import ingest

T0 = datetime(2026, 11, 10, 9, tzinfo=UTC)


@pytest.fixture
def shop(make_account):
    with time_machine.travel(T0 - timedelta(days=9), tick=False):
        return make_account(slug="shop", plan="basic")


def answered(ticket, at, *, requester, author="agent", subject=None, automated=False):
    inbound = {
        "id": f"{ticket}-in",
        "type": "message",
        "ticket": ticket,
        "occurred_at": at,
        "channel": "email",
        "author": "customer",
        "customer": requester,
    }
    if subject:
        inbound["subject"] = subject
    if automated:
        inbound["auto_submitted"] = True
    return [
        inbound,
        {
            "id": f"{ticket}-out",
            "type": "message",
            "ticket": ticket,
            "occurred_at": at + timedelta(seconds=20),
            "channel": "email",
            "author": author,
            "customer": requester,
        },
    ]


def statuses(shop, prefix=""):
    rows = Charge.objects.filter(account=shop, subject__startswith=prefix, meter="helpdesk_tickets")
    return sorted(rows.values_list("status", flat=True))


def test_H1_a_loop_of_500_tickets_in_an_hour_is_held_then_released(shop):
    events = []
    for i in range(500):
        events += answered(
            f"L{i}",
            T0 + timedelta(seconds=7 * i),
            requester="noreply@vendor.example",
            author="rule",
        )
    for i in range(5):  # real customers, same hour: billed
        events += answered(f"R{i}", T0 + timedelta(minutes=10 * i), requester=f"c{i}@shop.example")
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        for start in range(0, len(events), 1000):
            ingest(shop, events[start : start + 1000], now=T0 + timedelta(hours=1))
    assert statuses(shop, "L") == ["held"] * 500
    assert statuses(shop, "R") == ["final"] * 5
    hold = UsageHold.objects.get(account=shop, subject="L0")
    assert hold.kind == "loop" and hold.meter == ""
    assert (
        hold.reason
        == "Suspected loop: more than 10 tickets from noreply@vendor.example within 60 minutes."
    )
    assert hold.release_after == hold.held_at + timedelta(days=14)

    later = T0 + timedelta(hours=2)
    with time_machine.travel(later, tick=False):
        released = services.holds_release(
            held=list(UsageHold.objects.filter(account=shop)), by="ops", at=later
        )
    assert len(released) == 500
    assert statuses(shop, "L") == ["final"] * 500
    # A released ticket is not held again when its events are evaluated once more.
    with time_machine.travel(later, tick=False):
        ingest(
            shop,
            [
                {
                    "id": "L1-late",
                    "type": "internal_note",
                    "ticket": "L1",
                    "occurred_at": later,
                    "author": "agent",
                }
            ],
            now=later,
        )
    assert list(
        Charge.objects.filter(account=shop, subject="L1").values_list("status", flat=True)
    ) == ["final"]


def test_ten_tickets_an_hour_is_not_a_loop_the_eleventh_is(shop):
    events = []
    for i in range(10):
        events += answered(f"A{i}", T0 + timedelta(minutes=5 * i), requester="busy@shop.example")
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        ingest(shop, events, now=T0 + timedelta(hours=1))
    assert statuses(shop, "A") == ["final"] * 10
    # The 11th within the hour of the first ones: the whole burst is held, the earlier ten on
    # their next evaluation (queued by the detector).
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        ingest(
            shop,
            answered("A10", T0 + timedelta(minutes=51), requester="busy@shop.example"),
            now=T0 + timedelta(hours=1),
        )
    assert statuses(shop, "A") == ["held"] * 11


def test_a_subject_repeated_by_many_senders_is_a_loop(shop):
    events = []
    for i in range(12):
        events += answered(
            f"S{i}",
            T0 + timedelta(minutes=i),
            requester=f"x{i}@spam.example",
            subject=f"{'Re: ' * (i % 3)}Out of Office",
        )
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        ingest(shop, events, now=T0 + timedelta(hours=1))
    assert statuses(shop, "S") == ["held"] * 12
    assert TicketOrigin.objects.filter(account=shop, subject="out of office").count() == 12
    assert "on the subject “out of office”" in UsageHold.objects.filter(account=shop).first().reason


def test_automated_mail_answered_only_by_a_rule_is_held_at_once(shop):
    events = answered("AUTO", T0, requester="mailer@vendor.example", author="rule", automated=True)
    events += answered("HUMAN", T0, requester="ana@shop.example", author="agent", automated=True)
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        ingest(shop, events, now=T0 + timedelta(hours=1))
    assert statuses(shop, "AUTO") == ["held"]
    assert statuses(shop, "HUMAN") == ["final"]


def test_alert_only_accounts_are_never_held(shop):
    SpikeGuard.objects.create(account=shop, mode="alert_only")
    events = []
    for i in range(30):
        events += answered(
            f"L{i}", T0 + timedelta(seconds=i), requester="noreply@vendor.example", author="rule"
        )
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        ingest(shop, events, now=T0 + timedelta(hours=1))
    assert statuses(shop, "L") == ["final"] * 30
    assert not UsageHold.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_releases_at_once_release_each_hold_once(make_account):
    from billing import spike_guard
    from tests.billing.test_money_safety import in_threads

    with time_machine.travel(T0 - timedelta(days=9), tick=False):
        shop = make_account(slug="shop", plan="basic")
    events = []
    for i in range(12):
        events += answered(
            f"L{i}", T0 + timedelta(minutes=i), requester="loop@x.example", author="rule"
        )
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        ingest(shop, events, now=T0 + timedelta(hours=1))
    assert statuses(shop, "L") == ["held"] * 12

    def release(i):
        return spike_guard.holds_release(
            holds=list(UsageHold.objects.filter(account=shop)), by=f"tab {i}"
        )

    results = in_threads(2, release)
    assert sorted(len(r) for r in results) == [0, 12], results
    assert statuses(shop, "L") == ["final"] * 12
    from audit.models import AuditEntry

    assert AuditEntry.objects.filter(action="usage.hold_released").count() == 12
