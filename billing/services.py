"""Write paths of billing: invoices, their states, and closing periods (`run_billing`)."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from accounts.errors import Conflict
from metering import limits as metering_limits
from metering import services as metering_services
from metering.models import Charge, ChargeStatus
from plans import periods, pricing
from plans.models import ScheduledChange, Subscription, SubscriptionAddOn
from plans.terms import subscription_terms

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


def _next_number(year: int) -> str:
    """The year's next invoice number. The counter row stays locked until the caller's
    transaction ends, so numbers are taken in commit order and a rollback leaves no gap."""
    InvoiceCounter.objects.bulk_create([InvoiceCounter(year=year)], ignore_conflicts=True)
    counter = InvoiceCounter.objects.select_for_update().get(year=year)
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    return f"{year}-{counter.last_number:06d}"


def invoice_issue(
    *,
    subscription: Subscription | None,
    account_id: int,
    currency: str,
    reason: str,
    period: pricing.Period,
    lines: Sequence[pricing.Line],
    at: datetime,
    kind: str = InvoiceKind.INVOICE,
    credited: Invoice | None = None,
    note: str = "",
) -> Invoice:
    """Write an invoice with its lines and finalize it at once: numbered, immutable (F5).

    An invoice with nothing to pay is settled as it is issued."""
    total = pricing.invoice_total(lines)
    invoice = Invoice.objects.create(
        account_id=account_id,
        subscription=subscription,
        kind=kind,
        reason=reason,
        currency=currency,
        period_start=period.start,
        period_end=period.end,
        total_minor=total,
        credited_invoice=credited,
        note=note,
    )
    InvoiceLine.objects.bulk_create(
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
        for position, line in enumerate(lines, start=1)
    )
    invoice.number = _next_number(at.year)
    invoice.issued_at = at
    invoice.save(update_fields=["number", "issued_at"])
    # Nothing to pay: settled as issued. A credit note stays open until it is refunded or used.
    settled = kind == InvoiceKind.INVOICE and total == 0
    return invoice_transition(
        invoice=invoice,
        to=S.PAID if settled else S.OPEN,
        reason="nothing to pay" if settled else "issued",
        at=at,
    )


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
    due = Subscription.objects.filter(ended_at__isnull=True, usage_period_end__lte=as_of)
    for subscription_id in due.order_by("pk").values_list("pk", flat=True):
        while (closed := period_close(subscription_id=subscription_id, as_of=as_of)) is not None:
            invoice, applied = closed
            run.invoices.append(invoice.pk)
            run.changes_applied += applied
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
    rows = (
        Charge.objects.filter(
            account_id=subscription.account_id, period_start=start, status=ChargeStatus.FINAL
        )
        .values_list("meter")
        .annotate(n=Count("id"))
    )
    return dict(rows)


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


def period_close(*, subscription_id: int, as_of: datetime) -> tuple[Invoice, int] | None:
    """Close the subscription's next usage period if it ended by `as_of`: one invoice with
    its usage, late usage of earlier periods (F6) and, at a cycle's end, the next cycle's
    fees after applying scheduled changes (P1, P4, P7). Returns (invoice, changes applied)."""
    with transaction.atomic(durable=True):
        subscription = _claim(subscription_id, usage_period_end__lte=as_of)
        if subscription is None:
            return None
        closed = pricing.Period(
            start=subscription.usage_period_start, end=subscription.usage_period_end
        )
        cycle = pricing.Period(
            start=subscription.current_period_start, end=subscription.current_period_end
        )
        cycle_ends = closed.end == cycle.end
        terms = subscription_terms(subscription)
        usage = final_units(subscription, closed.start)
        annual = subscription.interval == periods.YEAR
        earlier = list(
            subscription.closes.filter(period_start__lt=closed.start).order_by("-period_start")[
                :LATE_LOOKBACK_CLOSES
            ]
        )
        in_cycle = [c for c in earlier if c.period_start >= cycle.start]
        earlier_months = []
        if cycle_ends and annual:
            deferred = {a.meter: a for a in terms.addons if a.meter in DEFERRED_ON_ANNUAL}
            for close in reversed(in_cycle):
                units = final_units(subscription, close.period_start)
                for meter, addon in deferred.items():
                    earlier_months.append(
                        pricing.UsageMonth(
                            period=pricing.Period(start=close.period_start, end=close.period_end),
                            used=units.get(meter, 0),
                            terms=addon.usage,
                        )
                    )
                    close.billed_units[meter] = units.get(meter, 0)
        late, late_closes = _late_usage(subscription, terms, earlier, in_cycle if annual else [])
        applied, next_cycle, next_terms = 0, None, None
        if cycle_ends:
            applied = _apply_scheduled_changes(subscription, at=closed.end)
            next_start, next_end = periods.period_containing(
                subscription.billing_anchor, subscription.interval, closed.end
            )
            next_cycle = pricing.Period(start=next_start, end=next_end)
            next_terms = subscription_terms(subscription)
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
        try:
            with transaction.atomic():
                invoice = invoice_issue(
                    subscription=subscription,
                    account_id=subscription.account_id,
                    currency=subscription.account.currency,
                    reason=InvoiceReason.PERIOD_CLOSE,
                    period=closed,
                    lines=lines,
                    at=as_of,
                    note="Includes late usage of earlier periods (F6)." if late else "",
                )
        except IntegrityError:
            # Another run closed this period between our read and our write: nothing to do.
            logger.warning(
                "Period %s of subscription %s was already closed", closed.start, subscription.pk
            )
            return None
        UsageClose.objects.create(
            subscription=subscription,
            period_start=closed.start,
            period_end=closed.end,
            closed_at=as_of,
            invoice=invoice,
            billed_units=usage,
        )
        for close in {c.pk: c for c in [*late_closes, *in_cycle]}.values():
            close.save(update_fields=["billed_units"])
        _advance(subscription, closed_end=closed.end, next_cycle=next_cycle)
        return invoice, applied


def _late_usage(subscription, terms, earlier: list[UsageClose], deferred_closes: list[UsageClose]):
    """F6: units of already-invoiced periods that became final since, per meter, priced as
    the difference of that period's overage. Voice/SMS months of the running annual cycle are
    not late: the cycle-end invoice prices them whole (P4)."""
    by_meter = {addon.meter: addon.usage for addon in terms.addons}
    if terms.plan is not None:
        by_meter[terms.plan.helpdesk.meter] = terms.plan.helpdesk
    deferred_ids = {c.pk for c in deferred_closes}
    late, touched = [], []
    for close in earlier:
        units = final_units(subscription, close.period_start)
        changed = False
        for meter, meter_terms in by_meter.items():
            if close.pk in deferred_ids and meter in DEFERRED_ON_ANNUAL:
                continue
            billed, now = close.billed_units.get(meter, 0), units.get(meter, 0)
            if now != billed:
                late.append(
                    pricing.LateUsage(
                        period=pricing.Period(start=close.period_start, end=close.period_end),
                        terms=meter_terms,
                        billed_units=billed,
                        units=now,
                    )
                )
                close.billed_units[meter] = now
                changed = True
        if changed:
            touched.append(close)
    return late, touched


def _apply_scheduled_changes(subscription: Subscription, *, at: datetime) -> int:
    """P7: downgrades requested during the cycle take effect exactly at its end."""
    changes = list(
        subscription.scheduled_changes.select_for_update()
        .filter(status=ScheduledChange.Status.SCHEDULED, effective_at__lte=at)
        .order_by("created_at", "pk")
    )
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
    if changes:
        subscription.save(update_fields=["plan", "interval"])
    return len(changes)


def _advance(
    subscription: Subscription, *, closed_end: datetime, next_cycle: pricing.Period | None
) -> None:
    """Move the stored periods on: the next monthly usage period, and the next cycle."""
    subscription.usage_period_start, subscription.usage_period_end = (
        periods.usage_period_containing(subscription.billing_anchor, closed_end)
    )
    fields = ["usage_period_start", "usage_period_end"]
    if next_cycle is not None:
        subscription.current_period_start, subscription.current_period_end = (
            next_cycle.start,
            next_cycle.end,
        )
        fields += ["current_period_start", "current_period_end"]
    subscription.save(update_fields=fields)
