"""Write paths of billing: invoices, their states, and closing periods (`run_billing`)."""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from accounts.errors import Conflict
from metering import limits as metering_limits
from metering import services as metering_services
from metering.models import Charge, ChargeStatus
from plans import periods, pricing
from plans.models import ScheduledChange, Subscription, SubscriptionAddOn
from plans.terms import TermsBook, subscription_terms

from .models import (
    Invoice,
    InvoiceCounter,
    InvoiceKind,
    InvoiceLine,
    InvoiceReason,
    InvoiceStatus,
    InvoiceStatusChange,
    UsageClose,
)

logger = logging.getLogger(__name__)

S = InvoiceStatus
# Which status may follow which (F1–F5): a paid or void invoice never moves again.
TRANSITIONS: dict[str, set[str]] = {
    S.DRAFT: {S.OPEN, S.PAID, S.VOID},
    S.OPEN: {S.PAID, S.REQUIRES_CONFIRMATION, S.PAST_DUE, S.VOID, S.UNCOLLECTIBLE},
    S.REQUIRES_CONFIRMATION: {S.PAID, S.PAST_DUE, S.VOID, S.UNCOLLECTIBLE},
    S.PAST_DUE: {S.PAID, S.REQUIRES_CONFIRMATION, S.VOID, S.UNCOLLECTIBLE},
    S.UNCOLLECTIBLE: {S.PAID},
    S.PAID: set(),
    S.VOID: set(),
}
# Voice and SMS on annual subscriptions are billed at the cycle's end (P4), not as late usage.
DEFERRED_ON_ANNUAL = pricing.DEFERRED_ON_ANNUAL
# Late events older than this are not re-billed (the invoice of a year ago stands as it is).
LATE_LOOKBACK_CLOSES = 12
# Subscriptions closed per transaction by run_billing.
CLOSE_BATCH = 500


class InvalidTransition(Conflict):
    code = "invalid_transition"


def invoice_transition(
    *, invoice: Invoice, to: str, reason: str = "", at: datetime | None = None
) -> Invoice:
    """Move an invoice to another status, checked against TRANSITIONS, locked and audited."""
    at = at or timezone.now()
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if to not in TRANSITIONS[locked.status]:
            raise InvalidTransition(
                f"Invoice {locked} is {locked.status}; it cannot become {to}.",
                details={"from": locked.status, "to": to},
            )
        InvoiceStatusChange.objects.create(
            invoice=locked, from_status=locked.status, to_status=to, reason=reason, at=at
        )
        locked.status = to
        locked.save(update_fields=["status"])
    invoice.status = to
    return locked


def _take_numbers(year: int, count: int) -> list[str]:
    """The year's next `count` invoice numbers. The counter row stays locked until the
    caller's transaction ends, so numbers are taken in commit order and a rollback leaves no
    gap."""
    InvoiceCounter.objects.bulk_create([InvoiceCounter(year=year)], ignore_conflicts=True)
    counter = InvoiceCounter.objects.select_for_update().get(year=year)
    first = counter.last_number + 1
    counter.last_number += count
    counter.save(update_fields=["last_number"])
    return [f"{year}-{n:06d}" for n in range(first, first + count)]


@dataclass
class InvoiceDraft:
    """An invoice to issue: what plans.pricing produced for one subscription and period."""

    subscription: Subscription | None
    account_id: int
    currency: str
    reason: str
    period: pricing.Period
    lines: Sequence[pricing.Line]
    kind: str = InvoiceKind.INVOICE
    credited: Invoice | None = None
    note: str = ""


def invoices_issue(*, drafts: Sequence[InvoiceDraft], at: datetime) -> list[Invoice]:
    """Write invoices with their lines, final at once: numbered, immutable (F5), audited.

    An invoice with nothing to pay is settled as it is issued; a credit note stays open until
    it is refunded or used. Bulk writes: closing thousands of periods is a few statements."""
    if not drafts:
        return []
    numbers = _take_numbers(at.year, len(drafts))
    invoices = []
    for draft, number in zip(drafts, numbers, strict=True):
        total = pricing.invoice_total(draft.lines)
        settled = draft.kind == InvoiceKind.INVOICE and total == 0
        invoices.append(
            Invoice(
                account_id=draft.account_id,
                subscription=draft.subscription,
                kind=draft.kind,
                reason=draft.reason,
                currency=draft.currency,
                period_start=draft.period.start,
                period_end=draft.period.end,
                total_minor=total,
                credited_invoice=draft.credited,
                note=draft.note,
                number=number,
                issued_at=at,
                status=S.PAID if settled else S.OPEN,
            )
        )
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=position,
                kind=line.kind,
                description=line.description,
                meter=line.meter or "",
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                amount_minor=line.amount_minor,
                rules=list(line.rules),
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for invoice, draft in zip(invoices, drafts, strict=True)
            for position, line in enumerate(draft.lines, start=1)
        ],
        batch_size=2000,
    )
    InvoiceStatusChange.objects.bulk_create(
        [
            InvoiceStatusChange(
                invoice=invoice,
                from_status=S.DRAFT,
                to_status=invoice.status,
                at=at,
                reason="nothing to pay" if invoice.status == S.PAID else "issued",
            )
            for invoice in invoices
        ],
        batch_size=2000,
    )
    return invoices


def invoice_issue(*, at: datetime, **draft) -> Invoice:
    """Issue one invoice (see invoices_issue)."""
    return invoices_issue(drafts=[InvoiceDraft(**draft)], at=at)[0]


def credit_note_issue(
    *, invoice: Invoice, amount_minor: int, description: str, at: datetime | None = None
) -> Invoice:
    """A correction of a final invoice: a numbered credit note, never an edit (F5)."""
    at = at or timezone.now()
    if not invoice.is_final or invoice.kind != InvoiceKind.INVOICE:
        raise Conflict("Only a final invoice can be credited.")
    credited = -sum(
        Invoice.objects.filter(credited_invoice=invoice).values_list("total_minor", flat=True)
    )
    if not 0 < amount_minor <= invoice.total_minor - credited:
        raise Conflict(
            f"A credit note takes between 1 and {invoice.total_minor - credited} (minor units).",
            details={"amount_minor": amount_minor},
        )
    period = pricing.Period(start=invoice.period_start, end=invoice.period_end)
    line = pricing.Line(
        kind="credit",
        description=description,
        meter=None,
        quantity=1,
        unit_price_minor=Decimal(-amount_minor),
        amount_minor=-amount_minor,
        rules=("F5",),
        period_start=period.start,
        period_end=period.end,
    )
    with transaction.atomic():
        return invoice_issue(
            subscription=invoice.subscription,
            account_id=invoice.account_id,
            currency=invoice.currency,
            reason=InvoiceReason.CORRECTION,
            period=period,
            lines=[line],
            at=at,
            kind=InvoiceKind.CREDIT_NOTE,
            credited=invoice,
            note=f"Credit note for invoice {invoice.number}.",
        )


# --- run_billing --------------------------------------------------------------------------


@dataclass
class BillingRun:
    as_of: datetime
    windows_finalized: int = 0
    invoices: list[int] = field(default_factory=list)
    changes_applied: int = 0
    threshold_emails: int = 0
    dunning: dict = field(default_factory=dict)


def run_billing(*, as_of: datetime | None = None) -> BillingRun:
    """Everything the periodic task does, once, as of an instant: finalize closed pending
    windows, issue first invoices, close every usage period that ended (one invoice each),
    apply scheduled changes and advance periods. Running it again changes nothing; two
    runs at once split the subscriptions between them (rows are claimed with SKIP LOCKED)."""
    as_of = as_of or timezone.now()
    run = BillingRun(as_of=as_of)
    run.windows_finalized = metering_services.windows_finalize(as_of=as_of)
    metering_limits.entitlements_expire(as_of=as_of)
    starts = Invoice.objects.filter(
        subscription=OuterRef("pk"), reason=InvoiceReason.SUBSCRIPTION_START
    )
    needing_start = Subscription.objects.filter(
        ended_at__isnull=True, is_migrated=False, started_at__lte=as_of
    ).filter(~Exists(starts))
    for subscription_id in needing_start.values_list("pk", flat=True):
        invoice = subscription_start_invoice(subscription_id=subscription_id, as_of=as_of)
        if invoice is not None:
            run.invoices.append(invoice.pk)
    # Each pass closes one period of every due subscription (batches of CLOSE_BATCH); a
    # subscription several periods behind is caught up by the next passes.
    while closed := periods_close(as_of=as_of):
        for invoice, applied in closed:
            run.invoices.append(invoice.pk)
            run.changes_applied += applied
    from . import payments, tasks  # they build on this module
    from .thresholds import usage_thresholds_notify

    run.threshold_emails = usage_thresholds_notify(as_of=as_of)
    if run.invoices:
        # F1: charged right after the period closes, by the payments workers.
        tasks.payment_charge_invoices.delay(run.invoices)
    run.dunning = payments.dunning_run(as_of=as_of)
    return run


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
        if (
            subscription is None
            or subscription.invoices.filter(reason=InvoiceReason.SUBSCRIPTION_START).exists()
        ):
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


def _resolutions_earlier(subscription: Subscription, closed_start: datetime) -> int:
    year_start, _ = periods.period_containing(
        subscription.billing_anchor, periods.YEAR, closed_start
    )
    return Charge.objects.filter(
        account_id=subscription.account_id,
        meter="automated_resolutions",
        status=ChargeStatus.FINAL,
        period_start__gte=year_start,
        period_start__lt=closed_start,
    ).count()


@dataclass
class _Close:
    """One subscription's close, priced in memory before anything is written."""

    subscription: Subscription
    closed: pricing.Period
    usage: dict[str, int]
    draft: InvoiceDraft
    next_cycle: pricing.Period | None
    changes: list[ScheduledChange]
    updated_closes: list[UsageClose]


def periods_close(*, as_of: datetime, limit: int = CLOSE_BATCH) -> list[tuple[Invoice, int]]:
    """Close the next usage period of up to `limit` subscriptions whose period ended by
    `as_of`: one invoice each with its usage, late usage of earlier periods (F6) and, at a
    cycle's end, the next cycle's fees after the scheduled changes (P1, P4, P7).

    The subscriptions are locked with SKIP LOCKED, so concurrent runs take disjoint batches;
    everything they need is read in a handful of grouped queries and written in bulk."""
    with transaction.atomic(durable=True):
        subscriptions = list(
            Subscription.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("account", "plan", "edition")
            .filter(ended_at__isnull=True, usage_period_end__lte=as_of)
            .order_by("pk")[:limit]
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
        earlier: dict[int, list[UsageClose]] = defaultdict(list)
        for close in UsageClose.objects.filter(subscription__in=subscriptions).order_by(
            "-period_start"
        ):
            if len(earlier[close.subscription_id]) < LATE_LOOKBACK_CLOSES:
                earlier[close.subscription_id].append(close)
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
                )
                for c, invoice in zip(closes, invoices, strict=True)
            ]
        )
        updated = {close.pk: close for c in closes for close in c.updated_closes}
        UsageClose.objects.bulk_update(list(updated.values()), ["billed_units"])
        for c in closes:
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
    in_cycle = [c for c in earlier if c.period_start >= cycle.start] if annual else []
    earlier_months = []
    if cycle_ends and annual:
        for close in reversed(in_cycle):
            counted = units.get((subscription.account_id, close.period_start), {})
            for addon in terms.addons:
                if addon.meter in DEFERRED_ON_ANNUAL:
                    period = pricing.Period(start=close.period_start, end=close.period_end)
                    used = counted.get(addon.meter, 0)
                    earlier_months.append(
                        pricing.UsageMonth(period=period, used=used, terms=addon.usage)
                    )
                    close.billed_units[addon.meter] = used
    late, late_closes = _late_usage(subscription, terms, earlier, in_cycle, units)
    changes = [c for c in scheduled if c.effective_at <= closed.end] if cycle_ends else []
    next_cycle = next_terms = None
    if cycle_ends:
        plan, interval, tiers = subscription.plan, subscription.interval, dict(addons)
        for change in changes:  # P7: what the next cycle is billed on
            plan = change.plan or plan
            interval = change.interval or interval
            if change.addon_id:
                tiers[change.addon] = change.addon_tier
        next_start, next_end = periods.period_containing(
            subscription.billing_anchor, interval, closed.end
        )
        next_cycle = pricing.Period(start=next_start, end=next_end)
        next_terms = book.subscription_terms(
            subscription, addons, plan=plan, interval=interval, tiers=tiers
        )
    lines = pricing.price_period_close(
        terms=terms,
        closed=closed,
        cycle=cycle,
        usage=usage,
        resolutions_used_earlier=_resolutions_earlier(subscription, closed.start)
        if subscription.edition_id
        else 0,
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
        subscription, closed, usage, draft, next_cycle, changes, [*late_closes, *in_cycle]
    )


def _late_usage(
    subscription, terms, earlier: list[UsageClose], deferred_closes: list[UsageClose], units
):
    """F6: units of already-invoiced periods that became final since, per meter, priced as
    the difference of that period's overage. Voice/SMS months of the running annual cycle are
    not late: the cycle-end invoice prices them whole (P4)."""
    by_meter = {addon.meter: addon.usage for addon in terms.addons}
    if terms.plan is not None:
        by_meter[terms.plan.helpdesk.meter] = terms.plan.helpdesk
    deferred_ids = {c.pk for c in deferred_closes}
    late, touched = [], []
    for close in earlier:
        counted = units.get((subscription.account_id, close.period_start), {})
        changed = False
        for meter, meter_terms in by_meter.items():
            if close.pk in deferred_ids and meter in DEFERRED_ON_ANNUAL:
                continue
            billed, now = close.billed_units.get(meter, 0), counted.get(meter, 0)
            if now != billed:
                period = pricing.Period(start=close.period_start, end=close.period_end)
                late.append(
                    pricing.LateUsage(
                        period=period, terms=meter_terms, billed_units=billed, units=now
                    )
                )
                close.billed_units[meter] = now
                changed = True
        if changed:
            touched.append(close)
    return late, touched


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
    subscription.save(update_fields=["plan", "interval"])


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
