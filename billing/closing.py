"""Closing usage periods: one invoice per subscription and period, late usage (F6), scheduled
changes at the cycle's end (P7), and the first invoice of a subscription (P1)."""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Count, Exists, OuterRef, Q

from audit.services import audit_record
from metering import limits as metering_limits
from metering.models import Charge, ChargeStatus
from outbox import services as outbox
from plans import periods, pricing
from plans.models import ScheduledChange, Subscription, SubscriptionAddOn
from plans.services import subscription_transition
from plans.terms import TermsBook, subscription_terms

from .invoicing import InvoiceDraft, invoice_issue, invoices_issue
from .models import CloseSetAside, Invoice, InvoiceReason, UsageClose

logger = logging.getLogger(__name__)

# Voice and SMS on annual subscriptions are billed at the cycle's end (P4), not as late usage.
DEFERRED_ON_ANNUAL = pricing.DEFERRED_ON_ANNUAL
# Late events older than this are not re-billed (the invoice of a year ago stands as it is);
# the window reaches further back only to take whole allocation terms (Z9, see docs/pricing.md).
LATE_LOOKBACK_CLOSES = 12
# Subscriptions closed per transaction by run_billing.
CLOSE_BATCH = 500
# A subscription whose close raised is tried again after these waits (the last one repeats).
SET_ASIDE_BACKOFF = (
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=12),
)


# Failures of the database itself, not of one subscription's data: never a reason to set aside.
INFRASTRUCTURE = (OperationalError, InterfaceError)


@dataclass
class Issued:
    invoices: list[int] = field(default_factory=list)
    changes_applied: int = 0
    set_aside: list[int] = field(default_factory=list)


def close_all(*, as_of: datetime) -> Issued:
    """Issue every first invoice and close every period due by `as_of`. A subscription whose
    data makes its step raise is set aside (recorded, retried with backoff); the others are
    billed as if it did not exist."""
    issued = Issued()
    starts = Invoice.objects.filter(
        subscription=OuterRef("pk"), reason=InvoiceReason.SUBSCRIPTION_START
    )
    needing_start = (
        _due(Subscription.objects.filter(is_migrated=False, started_at__lte=as_of), as_of)
        .filter(~Exists(starts))
        .values_list("pk", flat=True)
    )
    for subscription_id in needing_start:
        invoice = _isolated(
            issued,
            subscription_id,
            "start invoice",
            as_of,
            lambda sid=subscription_id: subscription_start_invoice(
                subscription_id=sid, as_of=as_of
            ),
        )
        if invoice is not None:
            issued.invoices.append(invoice.pk)
    # Each pass closes one period of every due subscription (batches of CLOSE_BATCH); a
    # subscription several periods behind is caught up by the next passes.
    while True:
        try:
            closed = periods_close(as_of=as_of)
        except INFRASTRUCTURE:
            raise  # the database itself failed: the whole run is retried, nothing set aside
        except Exception:
            # One subscription's data broke the batch (rolled back whole): close the same
            # subscriptions one by one, so that only the broken one waits.
            logger.warning("a close batch failed; closing its subscriptions one by one")
            closed = []
            for subscription_id in _due_closes(as_of).values_list("pk", flat=True)[:CLOSE_BATCH]:
                closed += _isolated(
                    issued,
                    subscription_id,
                    "period close",
                    as_of,
                    lambda sid=subscription_id: periods_close(as_of=as_of, only=sid),
                    default=[],
                )
            if not closed and not issued.set_aside:
                raise  # nothing was set aside: the failure is not one subscription's
        if not closed:
            return issued
        for invoice, applied in closed:
            issued.invoices.append(invoice.pk)
            issued.changes_applied += applied


def _due(subscriptions, as_of: datetime):
    """Live subscriptions not waiting out a set-aside backoff."""
    return subscriptions.filter(ended_at__isnull=True).exclude(
        billing_set_aside__next_attempt_at__gt=as_of
    )


def _due_closes(as_of: datetime):
    return _due(Subscription.objects.filter(usage_period_end__lte=as_of), as_of).order_by("pk")


def _isolated(
    issued: Issued, subscription_id: int, step: str, as_of: datetime, work: Callable, default=None
):
    try:
        result = work()
    except INFRASTRUCTURE:
        raise
    except Exception as exc:
        logger.exception("subscription %s set aside at its %s", subscription_id, step)
        _set_aside(subscription_id, step, exc, as_of)
        issued.set_aside.append(subscription_id)
        return default
    CloseSetAside.objects.filter(subscription_id=subscription_id).delete()
    return result


def _set_aside(subscription_id: int, step: str, exc: Exception, as_of: datetime) -> None:
    """Record why a subscription was not billed, for operators, and when to try again."""
    with transaction.atomic():
        record = CloseSetAside.objects.select_for_update().filter(subscription_id=subscription_id)
        record = record.first()
        attempts = (record.attempts + 1) if record else 1
        wait = SET_ASIDE_BACKOFF[min(attempts, len(SET_ASIDE_BACKOFF)) - 1]
        CloseSetAside.objects.update_or_create(
            subscription_id=subscription_id,
            defaults={
                "step": step,
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "attempts": attempts,
                "first_failed_at": record.first_failed_at if record else as_of,
                "next_attempt_at": as_of + wait,
            },
        )


def _claim(subscription_id: int, **conditions) -> Subscription | None:
    """Lock one subscription for this transaction, or None if another run holds it or it is
    no longer due."""
    return (
        Subscription.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("account", "plan", "edition")
        .filter(pk=subscription_id, ended_at__isnull=True, **conditions)
        .first()
    )


def subscription_start_invoice(*, subscription_id: int, as_of: datetime) -> Invoice | None:
    """P1: the first invoice carries the first period's fees, in advance."""
    with transaction.atomic(durable=True):
        subscription = _claim(subscription_id)
        if subscription is None:
            return None
        return start_invoice_issue(subscription=subscription, as_of=as_of)


def start_invoice_issue(*, subscription: Subscription, as_of: datetime) -> Invoice | None:
    """The first invoice, unless issued already (the caller holds the subscription's lock).

    Priced on the terms in force at the period's start: an upgrade that comes first issues
    this invoice before it changes the terms, then bills only the difference (P6)."""
    if subscription.invoices.filter(reason=InvoiceReason.SUBSCRIPTION_START).exists():
        return None
    terms = subscription_terms(subscription)
    period = pricing.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    lines = pricing.fee_lines(terms=terms, period=period)
    if not lines:
        return None
    return invoice_issue(
        subscription=subscription,
        account_id=subscription.account_id,
        currency=subscription.account.currency,
        reason=InvoiceReason.SUBSCRIPTION_START,
        period=period,
        lines=lines,
        at=max(as_of, subscription.started_at),
    )


def final_units(subscription: Subscription, start: datetime) -> dict[str, int]:
    """Units billed in the usage period starting at `start`: final ones; capped ones are
    recorded but never billed (C2, Z9), pending ones are not final yet."""
    return units_by_period([(subscription.account_id, start)]).get(
        (subscription.account_id, start), {}
    )


def units_by_period(
    pairs: Iterable[tuple[int, datetime]],
) -> dict[tuple[int, datetime], dict[str, int]]:
    """Final units per meter for many (account, usage period start) pairs, in one query."""
    by_start: dict[datetime, set[int]] = defaultdict(set)
    for account_id, start in pairs:
        by_start[start].add(account_id)
    if not by_start:
        return {}
    condition = Q()
    for start, accounts in by_start.items():
        condition |= Q(period_start=start, account_id__in=accounts)
    rows = (
        Charge.objects.filter(condition, status=ChargeStatus.FINAL)
        .values_list("account_id", "period_start", "meter")
        .annotate(n=Count("id"))
    )
    result: dict[tuple[int, datetime], dict[str, int]] = defaultdict(dict)
    for account_id, start, meter, n in rows:
        result[(account_id, start)][meter] = n
    return result


def late_lookback(closes: list[UsageClose]) -> list[UsageClose]:
    """The closes (newest first) whose late usage is still billed: the last
    LATE_LOOKBACK_CLOSES, and every earlier close of the allocation terms they touch, so that
    a term's running total of automated resolutions is always whole (Z9)."""
    kept = closes[:LATE_LOOKBACK_CLOSES]
    terms = {_term_key(c) for c in kept if _has_edition(c)}
    for close in closes[LATE_LOOKBACK_CLOSES:]:
        if _has_edition(close) and _term_key(close) in terms:
            kept.append(close)
    return kept


def late_histories(subscriptions: list[Subscription]) -> dict[int, list[UsageClose]]:
    """F6: per live subscription, the closes whose late units its next close bills, newest
    first, within the look-back: its own, and those of the account's subscriptions that ended
    (a merchant who starts again pays the last one's late units on the new one's first close,
    docs/pricing.md). Two queries for any number of subscriptions.

    Only the live subscription's close writes these rows' `billed_units`, under its lock: an
    ended subscription is never closed again, and an account has one live subscription at a
    time (start again locks the account and refuses while one is live)."""
    owner = {s.pk: s.pk for s in subscriptions}
    live_of_account = {s.account_id: s.pk for s in subscriptions}
    ended = dict(
        Subscription.objects.filter(account_id__in=live_of_account, ended_at__isnull=False)
        .exclude(pk__in=owner)
        .values_list("pk", "account_id")
    )
    for pk, account_id in ended.items():
        owner[pk] = live_of_account[account_id]
    history: dict[int, list[UsageClose]] = defaultdict(list)
    for close in UsageClose.objects.filter(subscription_id__in=owner).order_by("-period_start"):
        # An ended subscription's close without a terms snapshot (written before they were
        # kept) would be priced on the new subscription's terms: it stays as billed.
        if close.subscription_id in ended and not close.terms:
            continue
        history[owner[close.subscription_id]].append(close)
    return {pk: late_lookback(closes) for pk, closes in history.items()}


def _has_edition(close: UsageClose) -> bool:
    return bool(close.terms and close.terms.get("edition"))


def _term_key(close: UsageClose) -> tuple[str, str]:
    """The allocation term (the billing cycle) a close belongs to, as kept in its snapshot."""
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


def periods_close(
    *, as_of: datetime, limit: int = CLOSE_BATCH, only: int | None = None
) -> list[tuple[Invoice, int]]:
    """Close the next usage period of up to `limit` subscriptions whose period ended by
    `as_of`: one invoice each with its usage, late usage of earlier periods (F6) and, at a
    cycle's end, the next cycle's fees after the scheduled changes (P1, P4, P7).

    The subscriptions are locked with SKIP LOCKED, so concurrent runs take disjoint batches;
    everything they need is read in a handful of grouped queries and written in bulk."""
    with transaction.atomic(durable=True):
        due = _due_closes(as_of)
        if only is not None:
            due = due.filter(pk=only)
        subscriptions = list(
            due.select_for_update(skip_locked=True, of=("self",)).select_related(
                "account", "plan", "edition"
            )[:limit]
        )
        if not subscriptions:
            return []
        book = TermsBook(s.account_id for s in subscriptions)
        addons: dict[int, list] = defaultdict(list)
        for item in SubscriptionAddOn.objects.filter(subscription__in=subscriptions).select_related(
            "addon", "tier"
        ):
            addons[item.subscription_id].append((item.addon, item.tier))
        scheduled: dict[int, list[ScheduledChange]] = defaultdict(list)
        for change in (
            ScheduledChange.objects.filter(
                subscription__in=subscriptions, status=ScheduledChange.Status.SCHEDULED
            )
            .select_related("plan", "addon", "addon_tier")
            .order_by("created_at", "pk")
        ):
            scheduled[change.subscription_id].append(change)
        earlier = defaultdict(list, late_histories(subscriptions))
        units = units_by_period(
            [(s.account_id, s.usage_period_start) for s in subscriptions]
            + [(s.account_id, c.period_start) for s in subscriptions for c in earlier[s.pk]]
        )
        closes = [
            _price_close(s, book, addons[s.pk], scheduled[s.pk], earlier[s.pk], units, as_of)
            for s in subscriptions
        ]
        invoices = invoices_issue(drafts=[c.draft for c in closes], at=as_of)
        UsageClose.objects.bulk_create(
            [
                UsageClose(
                    subscription=c.subscription,
                    period_start=c.closed.start,
                    period_end=c.closed.end,
                    closed_at=as_of,
                    invoice=invoice,
                    billed_units=c.usage,
                    terms=c.snapshot,
                )
                for c, invoice in zip(closes, invoices, strict=True)
            ]
        )
        CloseSetAside.objects.filter(subscription__in=subscriptions).delete()
        updated = {close.pk: close for c in closes for close in c.updated_closes}
        UsageClose.objects.bulk_update(list(updated.values()), ["billed_units"])
        for c in closes:
            if any(change.cancel for change in c.changes):
                _end_subscription(c.subscription, c.changes, at=c.closed.end)
                continue  # its periods stay those of its last close: nothing more is closed
            if c.changes:
                _apply_scheduled_changes(c.subscription, c.changes, at=c.closed.end)
            _advance(c.subscription, closed_end=c.closed.end, next_cycle=c.next_cycle)
        Subscription.objects.bulk_update(
            [c.subscription for c in closes],
            [
                "usage_period_start",
                "usage_period_end",
                "current_period_start",
                "current_period_end",
            ],
        )
        return [(invoice, len(c.changes)) for c, invoice in zip(closes, invoices, strict=True)]


def _price_close(subscription, book, addons, scheduled, earlier, units, as_of) -> _Close:
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
    late, late_closes = _late_usage(history, earlier, deferred)
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
        note="Includes late usage of earlier periods (F6)." if late else "",
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


def _late_usage(history: _History, earlier: list[UsageClose], deferred: list[UsageClose]):
    """F6: units of already-invoiced periods that became final since, per meter, priced as
    the difference of that period's overage on the terms that period had (its snapshot).
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


def _apply_scheduled_changes(
    subscription: Subscription, changes: list[ScheduledChange], *, at: datetime
) -> None:
    """P7: downgrades requested during the cycle take effect exactly at its end."""
    for change in changes:
        if change.plan_id:
            subscription.plan = change.plan
        if change.interval:
            subscription.interval = change.interval
        if change.addon_id:
            if change.addon_tier_id:
                SubscriptionAddOn.objects.update_or_create(
                    subscription=subscription,
                    addon=change.addon,
                    defaults={"tier": change.addon_tier, "started_at": at},
                )
            else:
                SubscriptionAddOn.objects.filter(
                    subscription=subscription, addon=change.addon
                ).delete()
        change.status = ScheduledChange.Status.APPLIED
        change.resolved_at = at
        change.save(update_fields=["status", "resolved_at"])
        audit_record(
            action="subscription.change_applied",
            obj=subscription,
            after=change.as_audit(),
            reason="scheduled for the cycle's end (P7)",
            at=at,
        )
    subscription.save(update_fields=["plan", "interval"])
    outbox.subscription_changed_emit(subscription, effective="period_end")


def _end_subscription(
    subscription: Subscription, changes: list[ScheduledChange], *, at: datetime
) -> None:
    """A scheduled cancellation takes effect at the cycle's end: the subscription ends (no
    longer live, so never closed again), its features are switched off, and the other changes
    scheduled for the same moment have nothing left to change."""
    for change in changes:
        change.status = (
            ScheduledChange.Status.APPLIED if change.cancel else ScheduledChange.Status.CANCELED
        )
        change.resolved_at = at
        change.save(update_fields=["status", "resolved_at"])
    subscription_transition(
        subscription_id=subscription.pk,
        to=Subscription.Status.CANCELED,
        reason="canceled at the end of the cycle",
        at=at,
    )
    subscription.status = Subscription.Status.CANCELED
    subscription.ended_at = at
    subscription.save(update_fields=["ended_at"])
    metering_limits.entitlements_end(account_id=subscription.account_id, at=at)


def _advance(
    subscription: Subscription, *, closed_end: datetime, next_cycle: pricing.Period | None
) -> None:
    """Move the stored periods on (in memory; the caller saves): the next monthly usage
    period, and at a cycle's end the next cycle."""
    subscription.usage_period_start, subscription.usage_period_end = (
        periods.usage_period_containing(subscription.billing_anchor, closed_end)
    )
    if next_cycle is not None:
        subscription.current_period_start, subscription.current_period_end = (
            next_cycle.start,
            next_cycle.end,
        )
