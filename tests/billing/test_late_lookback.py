"""F6's look-back: which earlier closes a close re-counts for late usage. The last 12
(LATE_LOOKBACK_CLOSES), every earlier close of an allocation term they touch (Z9), and the
account's ended subscriptions' closes that kept their terms. `late_histories` decides on a
glance at each close's stored JSON and loads only those it keeps: what it returns must be what
`late_lookback` keeps of every close loaded whole."""

from datetime import UTC, datetime

import pytest

from billing.closing import LATE_LOOKBACK_CLOSES, late_histories, late_lookback
from billing.models import Invoice, UsageClose
from plans import periods
from plans.models import Subscription

NOW = datetime(2026, 11, 1, tzinfo=UTC)
EDITION = {"code": "ai-agent-1000", "name": "AI Agent 1,000", "included": 1000}


def month(back: int) -> datetime:
    return periods.add_months(NOW, -back)


def terms(cycle_start: datetime, cycle_end: datetime, edition: dict | None) -> dict:
    return {
        "version": 2,
        "cycle": [cycle_start.isoformat(), cycle_end.isoformat()],
        "plan": None,
        "addons": [],
        "edition": edition,
    }


def closes(subscription: Subscription, snapshots: dict[int, dict | None]) -> dict[int, int]:
    """One close per month back → its terms; returns month back → the close's id."""
    made = {}
    for back, snapshot in snapshots.items():
        start, end = month(back + 1), month(back)
        invoice = Invoice.objects.create(
            account_id=subscription.account_id,
            subscription=subscription,
            currency="USD",
            total_minor=0,
            period_start=start,
            period_end=end,
        )
        close = UsageClose.objects.create(
            subscription=subscription,
            period_start=start,
            period_end=end,
            closed_at=end,
            invoice=invoice,
            billed_units={"helpdesk_tickets": back},
            terms=snapshot,
        )
        made[back] = close.pk
    return made


def ended_before(live: Subscription, *, started: int, ended: int) -> Subscription:
    """The account's earlier subscription, from `started` months back to `ended`."""
    return Subscription.objects.create(
        account=live.account,
        plan=live.plan,
        interval="month",
        billing_anchor=month(started),
        started_at=month(started),
        current_period_start=month(ended + 1),
        current_period_end=month(ended),
        usage_period_start=month(ended + 1),
        usage_period_end=month(ended),
        ended_at=month(ended),
    )


def whole(subscription: Subscription, ended: Subscription) -> list[int]:
    """The look-back as it reads every close whole (the definition)."""
    every = UsageClose.objects.filter(subscription__in=[subscription, ended]).order_by(
        "-period_start"
    )
    kept = [c for c in every if not (c.subscription_id == ended.pk and not c.terms)]
    return [c.pk for c in late_lookback(kept)]


@pytest.mark.django_db
def test_the_last_twelve_closes_and_whole_allocation_terms_are_counted_again(make_account):
    account = make_account()
    live = Subscription.objects.get(account=account, ended_at__isnull=True)
    ended = ended_before(live, started=30, ended=20)
    term = (month(14), month(2))  # an annual allocation term the 12th close is in
    other = (month(26), month(14))
    plain = terms(month(1), month(0), None)
    made = closes(
        live,
        {
            **{back: plain for back in range(0, 10)},
            **{back: terms(*term, EDITION) for back in (10, 11, 12, 13)},
            14: terms(*other, EDITION),  # another term: not kept
            15: terms(*term, None),  # the same cycle without an edition: not kept
            16: {},  # no snapshot
            17: None,
        },
    )
    made_ended = closes(ended, {20: None, 21: terms(*other, None)})

    histories = late_histories([live])

    kept = histories[live.pk]
    assert [c.pk for c in kept] == whole(live, ended)
    assert [c.pk for c in kept] == [made[back] for back in range(0, 14)]
    assert len(kept) == LATE_LOOKBACK_CLOSES + 2
    # Loaded whole: their billed units and terms are there to price late usage with.
    assert kept[0].billed_units == {"helpdesk_tickets": 0}
    assert kept[12].terms["edition"] == EDITION
    assert made_ended[21] not in {c.pk for c in kept}  # beyond the last twelve


@pytest.mark.django_db
def test_an_ended_subscription_close_with_its_terms_is_counted_again(make_account):
    account = make_account()
    live = Subscription.objects.get(account=account, ended_at__isnull=True)
    ended = ended_before(live, started=5, ended=2)
    made = closes(live, {0: terms(month(1), month(0), None)})
    made_ended = closes(ended, {2: terms(month(3), month(2), None), 3: None})

    kept = [c.pk for c in late_histories([live])[live.pk]]

    # The bare one of the ended subscription stays as billed: it would be priced on the
    # new subscription's terms.
    assert kept == [made[0], made_ended[2]] == whole(live, ended)
