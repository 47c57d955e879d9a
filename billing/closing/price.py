"""Pricing one period close in memory: its usage, late usage of earlier periods (F6), the
cycle-end Voice/SMS months (P4) and the next cycle's fees."""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import NamedTuple

from django.db import connection
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.db.models.fields.json import KT

from audit.sql import IntArray
from metering.models import Charge, ChargeStatus, UsageHold
from plans import periods, pricing
from plans.models import ScheduledChange, Subscription

from ..invoicing import InvoiceDraft
from ..models import InvoiceReason, UsageClose

# Voice and SMS on annual subscriptions are billed at the cycle's end (P4), not as late usage.
DEFERRED_ON_ANNUAL = pricing.DEFERRED_ON_ANNUAL
# Late events older than this are not re-billed (the invoice of a year ago stands as it is);
# the window reaches further back only to take whole allocation terms (Z9, see docs/pricing.md).
LATE_LOOKBACK_CLOSES = 12


def final_units(subscription: Subscription, start: datetime) -> dict[str, int]:
    """Units billed in the usage period starting at `start`: final ones; capped ones are
    recorded but never billed (C2, Z9), pending ones are not final yet."""
    return units_by_period([(subscription.account_id, start)]).get(
        (subscription.account_id, start), {}
    )


def units_by_period(
    pairs: Iterable[tuple[int, datetime]],
) -> dict[tuple[int, datetime], dict[str, int]]:
    """Final units per meter for many (account, usage period start) pairs, in one query.

    Counted from the charge rows themselves, not from the per-day counters (UsageDay): those
    outlive an archived month's charges and can be written apart from them, and a close bills
    exactly the final charges it sees committed."""
    wanted = set(pairs)
    if not wanted:
        return {}
    result: dict[tuple[int, datetime], dict[str, int]] = defaultdict(dict)
    for account_id, start, meter, n in _final_unit_rows(wanted):
        result[(account_id, start)][meter] = n
    return result


def _final_unit_rows(pairs: set[tuple[int, datetime]]) -> Iterable[tuple[int, datetime, str, int]]:
    by_start: dict[datetime, set[int]] = defaultdict(set)
    for account_id, start in pairs:
        by_start[start].add(account_id)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(*final_units_statement(by_start))
            return cursor.fetchall()
    condition = Q()
    for start, account_ids in by_start.items():
        condition |= Q(period_start=start, account_id__in=account_ids)
    return (
        Charge.objects.filter(condition, status=ChargeStatus.FINAL)
        .values_list("account_id", "period_start", "meter")
        .annotate(n=Count("id"))
    )


def final_units_statement(by_start: dict[datetime, set[int]]) -> tuple[str, list]:
    """PostgreSQL's count of final units for the accounts of each period start.

    One array of accounts per period start: the ORM's IN lists (a parameter per account) took
    longer to build and bind than the database to answer. The same conditions as theirs: a
    join on unnest'ed (account, start) pairs cost the database half as much again in the close
    bench. Each period start prunes the charge table to its month's partition, where the
    (account, period start, meter) index finds the batch's rows (tests/billing/
    test_close_plans.py). The text holds placeholders only."""
    where = " OR ".join(["(period_start = %s AND account_id = ANY(%s::bigint[]))"] * len(by_start))
    params: list = [ChargeStatus.FINAL.value]
    for start, account_ids in by_start.items():
        params += [start, IntArray(sorted(account_ids))]
    sql = (
        "SELECT account_id, period_start, meter, count(*) FROM metering_charge "  # noqa: S608
        f"WHERE status = %s AND ({where}) GROUP BY account_id, period_start, meter"
    )
    return sql, params


# (account, usage period start, meter) → units
Released = dict[tuple[int, datetime, str], int]


def released_units(
    subscriptions: list[Subscription],
    earlier: dict[int, list[UsageClose]],
    last_closed: dict[int, datetime],
) -> Released:
    """Per (account, earlier period, meter), the final units of subjects whose spike-guard hold
    was released since the subscription's last close (`last_closed`): late usage that was
    held for review, not late events (the line says so). Only the periods of `earlier` are
    looked at: a release makes units final, so its period has moved (closing.tallies). One
    query, two when any hold was released."""
    since = {
        s.account_id: last_closed[s.pk]
        for s in subscriptions
        if earlier.get(s.pk) and s.pk in last_closed
    }
    if not since:
        return {}
    holds = [
        (account_id, kind, subject, meter)
        for account_id, kind, subject, meter, released_at in UsageHold.objects.filter(
            account_id__any=list(since), released_at__gt=min(since.values())
        ).values_list("account_id", "subject_kind", "subject", "meter", "released_at")
        if released_at is not None and released_at > since[account_id]
    ]
    if not holds:
        return {}
    held_meters: dict[tuple[int, str, str], set[str]] = defaultdict(set)
    for account_id, kind, subject, meter in holds:
        held_meters[(account_id, kind, subject)].add(meter)
    starts = {(s.account_id, c.period_start) for s in subscriptions for c in earlier.get(s.pk, [])}
    rows = Charge.objects.filter(
        account_id__in={a for a, _, _ in held_meters},
        subject__in={subject for _, _, subject in held_meters},
        period_start__in={start for _, start in starts},
        status=ChargeStatus.FINAL,
    ).values_list("account_id", "subject_kind", "subject", "meter", "period_start")
    released: Released = defaultdict(int)
    for account_id, kind, subject, meter, start in rows:
        meters = held_meters.get((account_id, kind, subject))
        if (
            start is not None
            and meters
            and ("" in meters or meter in meters)
            and (account_id, start) in starts
        ):
            released[(account_id, start, meter)] += 1
    return dict(released)


def late_lookback(closes: list[UsageClose]) -> list[UsageClose]:
    """The closes (newest first) whose late usage is still billed: the last
    LATE_LOOKBACK_CLOSES, and every earlier close of the allocation terms they touch, so that
    a term's running total of automated resolutions is always whole (Z9)."""
    return _lookback(closes, _has_edition, _term_key)


def _lookback(closes: list, has_edition: Callable, term_key: Callable) -> list:
    kept = closes[:LATE_LOOKBACK_CLOSES]
    terms = {term_key(c) for c in kept if has_edition(c)}
    for close in closes[LATE_LOOKBACK_CLOSES:]:
        if has_edition(close) and term_key(close) in terms:
            kept.append(close)
    return kept


class _Glance(NamedTuple):
    """What the look-back needs of a close, read without decoding its JSON documents."""

    pk: int
    period_start: datetime
    closed_at: datetime
    has_edition: bool
    cycle: tuple[str | None, str | None]


class Histories(NamedTuple):
    """What a batch of closes reads of the closes before them (F6, P4, Z9)."""

    # Per live subscription, newest first: the closes its close may re-bill or reads.
    closes: dict[int, list[UsageClose]]
    # Per live subscription whose history was read: when its last close was made.
    last_closed: dict[int, datetime]


def late_histories(subscriptions: list[Subscription]) -> dict[int, list[UsageClose]]:
    """F6: per live subscription, the closes whose late units its next close bills, newest
    first, within the look-back: its own, and those of the account's subscriptions that ended
    (a merchant who starts again pays the last one's late units on the new one's first close,
    docs/pricing.md). Two queries for any number of subscriptions.

    Only the live subscription's close writes these rows' `billed_units`, under its lock: an
    ended subscription is never closed again, and an account has one live subscription at a
    time (start again locks the account and refuses while one is live)."""
    return close_histories(subscriptions, moved=None).closes


def close_histories(
    subscriptions: list[Subscription], *, moved: set[tuple[int, datetime]] | None
) -> Histories:
    """The closes that the closes of `subscriptions` read: those of `late_histories` whose
    period `moved` (closing.tallies.periods_moved: the only ones with late units to bill),
    with every close of an allocation term one of them is in (Z9 re-rates a term whole), and
    those of the running cycle (P4 and Z9 read its earlier months). `moved=None`: any period
    may have moved, every close of the look-back is read.

    Only the histories of accounts with a moved period are looked at (the look-back decided
    on a glance at their closes); of the others, only a running annual cycle's closes are
    read: a close's cost does not grow with the history behind it."""
    owner = {s.pk: s for s in subscriptions}
    running: dict[int, list[UsageClose]] = {}
    if moved is not None:
        moved_accounts = {account_id for account_id, _ in moved}
        running = _running_cycles(
            [
                s
                for s in subscriptions
                if s.account_id not in moved_accounts
                and s.current_period_start < s.usage_period_start
            ]
        )
        owner = {pk: s for pk, s in owner.items() if s.account_id in moved_accounts}
    if not owner:
        return Histories(running, {})
    live_of_account = {s.account_id: s for s in owner.values()}
    ended = dict(
        Subscription.objects.filter(account_id__any=list(live_of_account), ended_at__isnull=False)
        .exclude(pk__any=list(owner))
        .values_list("pk", "account_id")
    )
    for pk, account_id in ended.items():
        owner[pk] = live_of_account[account_id]
    # Which closes are kept is decided on a glance at each (late_lookback's questions asked
    # of the stored JSON by the database), then only those are loaded: with two years behind
    # each subscription, decoding every close's terms was half of the close.
    glances: dict[int, list[_Glance]] = defaultdict(list)
    rows = (
        UsageClose.objects.filter(subscription_id__any=list(owner))
        .annotate(
            bare=ExpressionWrapper(Q(terms__isnull=True) | Q(terms={}), BooleanField()),
            edition=KT("terms__edition"),
            cycle_start=KT("terms__cycle__0"),
            cycle_end=KT("terms__cycle__1"),
        )
        .order_by("-period_start")
        .values_list(
            "pk",
            "subscription_id",
            "period_start",
            "closed_at",
            "bare",
            "edition",
            "cycle_start",
            "cycle_end",
        )
    )
    for pk, subscription_id, start, closed_at, bare, edition, cycle_start, cycle_end in rows:
        # An ended subscription's close without a terms snapshot (written before they were
        # kept) would be priced on the new subscription's terms: it stays as billed.
        if subscription_id in ended and bare:
            continue
        # An edition is an object or null in a snapshot. As text, PostgreSQL reads a null as
        # NULL, SQLite as "null"; "{}" is the empty object.
        has_edition = not bare and edition not in (None, "", "null", "{}")
        glances[owner[subscription_id].pk].append(
            _Glance(pk, start, closed_at, has_edition, (cycle_start, cycle_end))
        )
    kept = {
        pk: _lookback(closes, attrgetter("has_edition"), attrgetter("cycle"))
        for pk, closes in glances.items()
    }
    last_closed = {pk: max(g.closed_at for g in closes) for pk, closes in kept.items()}
    if moved is not None:
        kept = {pk: _read(owner[pk], closes, moved) for pk, closes in kept.items()}
    wanted = [g.pk for closes in kept.values() for g in closes]
    loaded = {close.pk: close for close in UsageClose.objects.filter(pk__any=wanted)}
    return Histories(
        {**running, **{pk: [loaded[g.pk] for g in closes] for pk, closes in kept.items()}},
        last_closed,
    )


def _running_cycles(subscriptions: list[Subscription]) -> dict[int, list[UsageClose]]:
    """The closes of each subscription's running cycle before its open usage period, newest
    first: what P4 and Z9 read of an annual cycle. They are the newest closes of the look-back
    (a cycle holds at most twelve usage periods), and an ended subscription's closes all came
    before the live one started, so none of them is in its cycle."""
    if not subscriptions:
        return {}
    by_pk = {s.pk: s for s in subscriptions}
    result: dict[int, list[UsageClose]] = defaultdict(list)
    closes = UsageClose.objects.filter(
        subscription_id__any=list(by_pk),
        period_start__gte=min(s.current_period_start for s in subscriptions),
    ).order_by("-period_start")
    for close in closes:
        s = by_pk[close.subscription_id]
        if s.current_period_start <= close.period_start < s.usage_period_start:
            result[s.pk].append(close)
    return dict(result)


def _read(live: Subscription, kept: list[_Glance], moved: set) -> list[_Glance]:
    """Of a subscription's look-back, the closes its close reads: those whose period moved,
    the others of their allocation terms, and those of its running cycle."""
    moved_here = [g for g in kept if (live.account_id, g.period_start) in moved]
    terms = {g.cycle for g in moved_here if g.has_edition}
    return [
        g
        for g in kept
        if (live.account_id, g.period_start) in moved
        or g.period_start >= live.current_period_start
        or (g.has_edition and g.cycle in terms)
    ]


def _has_edition(close: UsageClose) -> bool:
    return bool(close.terms and close.terms.get("edition"))


def _term_key(close: UsageClose) -> tuple[str, str]:
    """The allocation term (the billing cycle) a close belongs to, as kept in its snapshot."""
    assert close.terms is not None  # callers ask _has_edition first
    start, end = close.terms["cycle"]
    return start, end


@dataclass
class _Close:
    """One subscription's close, priced in memory before anything is written."""

    subscription: Subscription
    closed: pricing.Period
    snapshot: dict
    usage: dict[str, int]
    draft: InvoiceDraft
    next_cycle: pricing.Period | None
    changes: list[ScheduledChange]
    updated_closes: list[UsageClose]


def _price_close(
    subscription, book, addons, scheduled, earlier, units, as_of, released: Released | None = None
) -> _Close:
    closed = pricing.Period(
        start=subscription.usage_period_start, end=subscription.usage_period_end
    )
    cycle = pricing.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    cycle_ends = closed.end == cycle.end
    annual = subscription.interval == periods.YEAR
    terms = book.subscription_terms(subscription, addons)
    usage = units.get((subscription.account_id, closed.start), {})
    earlier = [c for c in earlier if c.period_start < closed.start]
    in_cycle = [c for c in earlier if c.period_start >= cycle.start]
    history = _History(subscription.account_id, terms, cycle, units)
    earlier_months = []
    deferred = in_cycle if annual else []
    if cycle_ends and annual:
        # P4: each month of the cycle is rated on the Voice/SMS tier it had (its snapshot).
        for close in reversed(deferred):
            counted = history.counted(close)
            for addon in history.terms_of(close)[0].addons:
                if addon.meter in DEFERRED_ON_ANNUAL:
                    period = pricing.Period(start=close.period_start, end=close.period_end)
                    used = counted.get(addon.meter, 0)
                    earlier_months.append(
                        pricing.UsageMonth(period=period, used=used, terms=addon.usage)
                    )
            for meter in DEFERRED_ON_ANNUAL:
                if meter in counted or meter in close.billed_units:
                    close.billed_units[meter] = counted.get(meter, 0)
    late, late_closes = _late_usage(history, earlier, deferred, released or {})
    changes = [c for c in scheduled if c.effective_at <= closed.end] if cycle_ends else []
    next_cycle = next_terms = None
    ends = any(c.cancel for c in changes)  # the subscription ends here: no next cycle, no fee
    if cycle_ends and not ends:
        plan, interval, tiers = subscription.plan, subscription.interval, dict(addons)
        for change in changes:  # P7: what the next cycle is billed on
            plan = change.plan or plan
            interval = change.interval or interval
            if change.addon_id:
                tiers[change.addon] = change.addon_tier
        # The next cycle starts where this one ends, on the anchor's monthly grid.
        next_start, next_end = periods.cycle_starting(
            subscription.billing_anchor, closed.end, interval
        )
        next_cycle = pricing.Period(start=next_start, end=next_end)
        next_terms = book.subscription_terms(
            subscription, addons, plan=plan, interval=interval, tiers=tiers
        )
    # Z9: the allocation term is the billing cycle; its earlier months as counted now (any
    # late change to them is settled by a late line on this same invoice).
    used_earlier = 0
    if terms.edition is not None:
        used_earlier = sum(history.counted(c).get(pricing.RESOLUTIONS_METER, 0) for c in in_cycle)
    lines = pricing.price_period_close(
        terms=terms,
        closed=closed,
        cycle=cycle,
        usage=usage,
        resolutions_used_earlier=used_earlier,
        earlier_months=earlier_months,
        late=late,
        next_cycle=next_cycle,
        next_terms=next_terms,
    )
    draft = InvoiceDraft(
        subscription=subscription,
        account_id=subscription.account_id,
        currency=subscription.account.currency,
        reason=InvoiceReason.PERIOD_CLOSE,
        period=closed,
        lines=lines,
        note="Includes late usage of earlier periods." if late else "",
    )
    return _Close(
        subscription,
        closed,
        pricing.terms_snapshot(terms=terms, cycle=cycle),
        usage,
        draft,
        next_cycle,
        changes,
        [*late_closes, *(deferred if cycle_ends else [])],
    )


class _History:
    """One subscription's closed periods as they were priced: the terms each one kept, and
    its units as counted now."""

    def __init__(self, account_id: int, terms: pricing.SubscriptionTerms, cycle, units):
        self.account_id, self.terms, self.cycle, self.units = account_id, terms, cycle, units
        self._terms: dict[int, tuple[pricing.SubscriptionTerms, pricing.Period]] = {}

    def counted(self, close: UsageClose) -> dict[str, int]:
        return self.units.get((self.account_id, close.period_start), {})

    def terms_of(self, close: UsageClose) -> tuple[pricing.SubscriptionTerms, pricing.Period]:
        """The terms the period was priced on. Closes written before snapshots were kept
        fall back to the subscription's terms now, as they were always priced before."""
        if close.pk not in self._terms:
            if close.terms:
                self._terms[close.pk] = pricing.terms_from_snapshot(close.terms)
            else:
                self._terms[close.pk] = (self.terms, self.cycle)
        return self._terms[close.pk]


def _late_usage(
    history: _History, earlier: list[UsageClose], deferred: list[UsageClose], released: Released
):
    """F6: units of already-invoiced periods that became final since, per meter, priced as
    the difference of that period's overage on the terms that period had (its snapshot); those
    released from a spike-guard hold are counted apart, for the line's words.
    Voice/SMS months of the running annual cycle are not late: the cycle-end invoice prices
    them whole (P4). Automated resolutions are settled per allocation term (Z9)."""
    deferred_ids = {c.pk for c in deferred}
    late, touched = [], {}
    for close in earlier:
        counted = history.counted(close)
        changed = {
            meter: now
            for meter in counted.keys() | close.billed_units.keys()
            if (now := counted.get(meter, 0)) != close.billed_units.get(meter, 0)
            and meter != pricing.RESOLUTIONS_METER
            and not (close.pk in deferred_ids and meter in DEFERRED_ON_ANNUAL)
        }
        if not changed:
            continue
        terms, _ = history.terms_of(close)
        by_meter = {addon.meter: addon.usage for addon in terms.addons}
        if terms.plan is not None:
            by_meter[terms.plan.helpdesk.meter] = terms.plan.helpdesk
        period = pricing.Period(start=close.period_start, end=close.period_end)
        for meter in sorted(changed):
            # A meter the period did not pay for (an add-on added later, or removed) is free.
            if meter in by_meter:
                late.append(
                    pricing.LateUsage(
                        period=period,
                        terms=by_meter[meter],
                        billed_units=close.billed_units.get(meter, 0),
                        units=changed[meter],
                        released=released.get((history.account_id, close.period_start, meter), 0),
                    )
                )
            close.billed_units[meter] = changed[meter]
        touched[close.pk] = close
    late += _late_resolutions(history, earlier, touched)
    return late, list(touched.values())


def _late_resolutions(history: _History, earlier: list[UsageClose], touched: dict) -> list:
    """Z9, F6: a term's overage is billed on its running total, so late resolutions (a Z2
    verdict 72 h after a session, every month) re-rate the term's closed months together:
    overage(total counted now) − overage(total billed), on the term's latest terms."""
    terms_by_term: dict[tuple[str, str], list[UsageClose]] = defaultdict(list)
    for close in earlier:
        if _has_edition(close):
            terms_by_term[_term_key(close)].append(close)
    late = []
    meter = pricing.RESOLUTIONS_METER
    for closes in terms_by_term.values():
        billed = sum(c.billed_units.get(meter, 0) for c in closes)
        now = sum(history.counted(c).get(meter, 0) for c in closes)
        if billed == now:
            continue
        newest = max(closes, key=lambda c: c.period_start)
        edition = history.terms_of(newest)[0].edition
        assert edition is not None  # grouped by _has_edition: its snapshot has an edition
        _, term = history.terms_of(newest)
        period = pricing.Period(start=term.start, end=newest.period_end)
        late.append(
            pricing.LateUsage(
                period=period,
                terms=pricing.resolution_terms(edition=edition),
                billed_units=billed,
                units=now,
            )
        )
        for close in closes:
            close.billed_units[meter] = history.counted(close).get(meter, 0)
            touched[close.pk] = close
    return late
