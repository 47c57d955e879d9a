"""The per-day usage counters (UsageDay) against a count of the charge rows, after a shuffled
history: late earlier events moving units between days and across a period boundary, merges,
Convert's cap re-ranking clicks, pending windows becoming final, and folds in between."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db.models import Sum

from metering import services
from metering.models import Charge, UsageDay

from .helpers import ingest

BOUNDARY = datetime(2026, 12, 1, tzinfo=UTC)  # the shop's usage periods start on the 1st
H = timedelta(hours=1)


def from_charges(account) -> Counter:
    counts: Counter = Counter()
    rows = Charge.objects.filter(account=account, period_start__isnull=False).exclude(
        status="not_counted"
    )
    for period_start, meter, billable_at, status in rows.values_list(
        "period_start", "meter", "billable_at", "status"
    ):
        counts[(period_start, meter, billable_at.astimezone(UTC).date(), status)] += 1
    return counts


def from_counters(account) -> Counter:
    rows = (
        UsageDay.objects.filter(account=account)
        .values_list("period_start", "meter", "day", "status")
        .annotate(n=Sum("units"))
    )
    return Counter({(s, m, d, st): n for s, m, d, st, n in rows if n})


def history(rng: random.Random) -> list[dict]:
    """Tickets whose agent reply (the billable moment) is on either side of midnight and of
    the period boundary, calls, SMS, merges, more clicks than Convert's 50 and automations."""
    events = []
    for n in range(40):
        opened = BOUNDARY + timedelta(minutes=rng.randint(-36 * 60, 36 * 60))
        events.append(msg(f"c{n}", f"T{n}", opened))
        for k in range(rng.randint(1, 3)):  # later replies; a late earlier one moves the unit
            reply = opened + timedelta(minutes=rng.randint(1, 20 * 60))
            events.append(msg(f"a{n}-{k}", f"T{n}", reply, author="agent"))
    for n in range(8):
        events.append(
            {
                "id": f"call{n}",
                "type": "call",
                "ticket": f"V{n}",
                "occurred_at": BOUNDARY + timedelta(hours=rng.randint(-30, 30)),
                "channel": "phone",
                "direction": "inbound",
                "outcome": "answered",
                "customer": f"cust{n % 3}",
            }
        )
    for n in range(6):  # merges of ticket families (M1), some into voice tickets
        events.append(
            {
                "id": f"merge{n}",
                "type": "ticket_merged",
                "ticket": f"T{n}",
                "into": f"V{n}" if n % 2 else f"T{n + 10}",
                "occurred_at": BOUNDARY + timedelta(hours=rng.randint(-20, 40)),
            }
        )
    for n in range(60):  # one period: 50 bill, 10 are capped (C2), re-ranked as they arrive
        events.append(
            {
                "id": f"k{n}",
                "type": "campaign_click",
                "session": f"s{n}",
                "campaign": "bf",
                "occurred_at": BOUNDARY + timedelta(minutes=rng.randint(0, 2000)),
            }
        )
    for n in range(5):
        events.append(
            {
                "id": f"au{n}",
                "type": "automation",
                "ticket": f"U{n}",
                "occurred_at": BOUNDARY + timedelta(hours=rng.randint(-10, 10)),
                "feature": "order_management",
                "outcome": "resolved",
            }
        )
    rng.shuffle(events)
    return events


def msg(i, ticket, at, author="customer"):
    return {
        "id": i,
        "type": "message",
        "ticket": ticket,
        "occurred_at": at,
        "channel": "email",
        "author": author,
    }


@pytest.fixture
def shop(make_account):
    # Subscribed before the events it is sent (earlier events are refused).
    with time_machine.travel(datetime(2026, 11, 1, tzinfo=UTC), tick=False):
        return make_account(
            slug="shop",
            addons=[("voice", "voice-20"), ("convert", "convert-50"), ("automate", "automate-30")],
        )


@pytest.mark.parametrize("seed", [1, 2])
def test_counters_equal_a_count_of_the_charges_after_a_shuffled_history(shop, seed):
    rng = random.Random(seed)
    events = history(rng)
    now = BOUNDARY + 3 * 24 * H
    for batch_number, start in enumerate(range(0, len(events), 25)):
        ingest(shop, events[start : start + 25], now=now + batch_number * H)
        assert from_counters(shop) == from_charges(shop)
        if batch_number % 3 == 1:
            services.usage_days_fold()
            assert from_counters(shop) == from_charges(shop)
    services.windows_finalize(as_of=now + 100 * H)  # pending automations become final
    counted = from_charges(shop)
    assert from_counters(shop) == counted
    # The history did what it is meant to exercise: both periods, capped clicks, final ones.
    assert {key[0] for key in counted} == {datetime(2026, 11, 1, tzinfo=UTC), BOUNDARY}
    assert any(key[3] == "capped" for key in counted)
    assert any(key[1] == "automated_interactions" and key[3] == "final" for key in counted)
    services.usage_days_fold()
    assert from_counters(shop) == counted
    # Folded: one row per key, and a second fold has nothing to do.
    assert UsageDay.objects.filter(account=shop).count() == len(counted)
    assert services.usage_days_fold() == 0


def test_a_charge_deleted_or_updated_by_any_path_moves_the_counters(shop):
    ingest(
        shop,
        [msg("c", "T", BOUNDARY - 2 * H), msg("a", "T", BOUNDARY - H, author="agent")],
        now=BOUNDARY,
    )
    Charge.objects.filter(account=shop, subject="T").update(status="capped")
    assert from_counters(shop) == from_charges(shop) != Counter()
    Charge.objects.filter(account=shop).delete()
    assert from_counters(shop) == Counter()
