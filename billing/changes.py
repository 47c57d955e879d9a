"""Plan, interval and add-on changes: upgrades at once and prorated (P6), downgrades at the
cycle's end (P7); a request mixing both is split. It lives in billing because an upgrade issues
an invoice."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, DomainError, NotFound
from accounts.models import Account
from audit.services import audit_record
from metering import limits as metering_limits
from outbox import services as outbox
from plans import periods, pricing
from plans.models import AddOn, AddOnTier, Plan, ScheduledChange, Subscription, SubscriptionAddOn
from plans.terms import subscription_terms

from . import notifications, shopify_figures, statement
from .closing import start_invoice_issue
from .invoicing import invoice_issue
from .models import Invoice, InvoiceReason


@dataclass(frozen=True)
class ChangeRequest:
    plan: str | None = None
    interval: str | None = None
    addons: tuple[tuple[str, str | None], ...] = ()  # (add-on code, tier code or None: remove)


@dataclass
class ChangeResult:
    effective: str  # "now" | "period_end"
    effective_at: datetime
    scheduled: list[ScheduledChange] = field(default_factory=list)
    invoice: Invoice | None = None
    # Scheduled changes of the same items that this request replaced (the latest request wins).
    superseded: list[ScheduledChange] = field(default_factory=list)


def plan_for_sale(code: str) -> Plan:
    """A public plan a merchant may move to (or start again on) by themselves; a negotiated
    one is set up by an operator."""
    plan = Plan.objects.filter(code=code, is_active=True).first()
    if plan is None:
        raise DomainError(f"Unknown plan '{code}'.", code="unknown_plan")
    if plan.is_custom:
        raise DomainError(
            f"'{plan.code}' is negotiated per account: an operator sets it up.",
            code="no_account_terms",
        )
    return plan


def _resolve(subscription: Subscription, request: ChangeRequest):
    plan = None if request.plan is None else plan_for_sale(request.plan)
    if request.interval not in (None, periods.MONTH, periods.YEAR):
        raise DomainError("interval is 'month' or 'year'.", details={"field": "interval"})
    if request.interval is not None and subscription.interval == periods.DAYS_30:
        # Shopify bills the app subscription every 30 days and offers nothing else with usage
        # charges: the cycle cannot become monthly or annual (docs/shopify.md, decision 2).
        raise DomainError(
            "This subscription renews every 30 days: its interval does not change.",
            details={"field": "interval"},
        )
    tiers: dict[AddOn, AddOnTier | None] = {}
    for code, tier_code in request.addons:
        addon = AddOn.objects.filter(code=code, is_active=True).first()
        if addon is None:
            raise DomainError(f"Unknown add-on '{code}'.", code="unknown_addon")
        tier = None
        if tier_code is not None:
            tier = AddOnTier.objects.filter(addon=addon, code=tier_code).first()
            if tier is None:
                raise DomainError(f"Unknown tier '{tier_code}' of '{code}'.", code="unknown_addon")
        tiers[addon] = tier
    return plan, tiers


def subscription_change(
    *, account: Account, request: ChangeRequest, at: datetime | None = None, prorate: bool = True
) -> ChangeResult:
    """Apply the upgrade parts of a request now with their prorated invoice, and schedule its
    downgrade parts for the end of the cycle, whenever it is asked (P6, P7). `prorate=False`
    applies them without our invoice: on the Shopify channel, Shopify prorates the replaced
    app subscription itself (docs/shopify.md, decision 6)."""
    at = at or timezone.now()
    with transaction.atomic(durable=True):
        subscription = _lock_live_subscription(account)
        if subscription is None:
            raise NotFound(f"Account '{account.slug}' has no subscription.")
        if subscription.edition_id:
            # A refusal of the account's state, not of the request: a 409 (was a 400).
            raise Conflict("Per-agent editions are changed by an operator.", code="edition_change")
        if at < subscription.current_period_start:
            # Billing was run ahead of the clock (run_billing --as-of a future date): there is
            # no cycle around `at` to prorate against.
            starts = subscription.current_period_start
            raise Conflict(
                f"The subscription's current cycle starts {starts:%Y-%m-%d}, after now (billing "
                "was run ahead); change it from then on.",
                code="cycle_not_started",
                details={"current_period_start": subscription.current_period_start.isoformat()},
            )
        if at >= subscription.current_period_end:
            # The cycle ended and billing has not closed it yet (it runs every few minutes; a
            # close set aside waits longer): no cycle around `at` to prorate against, and an
            # end-of-cycle change would land on a date already past. Was a 500 (Schemathesis).
            ended = subscription.current_period_end
            raise Conflict(
                f"The subscription's cycle ended {ended:%Y-%m-%d %H:%M} UTC and is being "
                "closed; send the change again once the next cycle has started.",
                code="cycle_not_closed",
                details={"current_period_end": ended.isoformat()},
            )
        plan, tiers = _resolve(subscription, request)
        current = subscription_terms(subscription)
        requested = subscription_terms(
            subscription, plan=plan, interval=request.interval, tiers=tiers
        )
        kind = pricing.classify_change(current=current, requested=requested)
        if kind == "none":
            # A conflict with the subscription's state, not a malformed request: the same
            # body sent at once by several callers finds the first one's change applied.
            raise Conflict(
                "The request changes nothing: the subscription is already on these terms.",
                code="no_change",
            )
        # The latest request wins: a part of this one replaces what was scheduled earlier for
        # the same item (an upgrade to Advanced cancels a scheduled move to Basic, a second
        # downgrade replaces the first), and the answer says so.
        parts = pricing.change_parts(current=current, requested=requested)
        superseded = _supersede(subscription, parts, at=at)
        up, down = _split(parts, plan, request.interval, tiers)
        if down:
            _refuse_if_ending(subscription)
        if not up:
            result = _schedule(subscription, *down)
            result.superseded = superseded
            return result
        if not subscription.is_migrated and subscription.started_at <= at:
            # The first period's fees on the terms in force at its start, before the upgrade
            # bills the difference: never the new terms twice.
            start_invoice_issue(subscription=subscription, as_of=at)
        up_plan, up_interval, up_tiers = up
        if down:
            # Only the upgrade parts are priced now; the rest waits for the cycle's end.
            requested = subscription_terms(
                subscription, plan=up_plan, interval=up_interval, tiers=up_tiers
            )
        result = _upgrade(
            subscription, current, requested, up_plan, up_interval, up_tiers, at, prorate=prorate
        )
        if down:
            result.scheduled = _schedule(subscription, *down).scheduled
        result.superseded = superseded
        return result


def _lock_live_subscription(account: Account) -> Subscription | None:
    """Lock the account's live subscription, then read it with its plan and edition.

    Two statements on purpose. A row locked after waiting for another transaction is re-checked
    by PostgreSQL on its new version, but the rows joined to it in the same statement are not
    re-read: after a concurrent upgrade, one `select_for_update().select_related("plan")` came
    back with the new plan_id and no plan (issue 20: NoneType.pk in plans/terms.py). The read
    after the lock starts from a fresh snapshot, so it sees what the other change committed.
    """
    locked = (
        Subscription.objects.select_for_update()
        .filter(account=account, ended_at__isnull=True)
        .values_list("pk", flat=True)
        .first()
    )
    if locked is None:
        return None
    return Subscription.objects.select_related("account", "plan", "edition").get(pk=locked)


def _refuse_if_ending(subscription: Subscription) -> None:
    """A change for the cycle's end would never apply once the subscription ends there: say so
    rather than schedule it (an upgrade, applied now, stays possible)."""
    ending = subscription.scheduled_changes.filter(
        cancel=True, status=ScheduledChange.Status.SCHEDULED
    ).first()
    if ending is not None:
        raise Conflict(
            "Your subscription ends at the end of this billing cycle: a change scheduled for "
            "then would never apply. Undo the cancellation first.",
            code="subscription_ending",
            details={"ends_at": ending.effective_at.isoformat()},
        )


def _split(parts: Mapping[str, str], plan, interval, tiers):
    """The request's upgrade parts and its downgrade parts (lateral moves are downgrades),
    each as (plan, interval, tiers), or None when it has none."""
    halves = {}
    for kind in ("upgrade", "downgrade"):
        chosen = (
            plan if parts.get("plan") == kind else None,
            interval if parts.get("interval") == kind else None,
            {a: t for a, t in tiers.items() if parts.get(f"addon:{a.code}") == kind},
        )
        halves[kind] = chosen if any(chosen) else None
    return halves["upgrade"], halves["downgrade"]


def _supersede(subscription, parts: Mapping[str, str], *, at: datetime) -> list[ScheduledChange]:
    """Cancel the scheduled changes of the items this request changes. A scheduled row that
    also changes an item the request leaves alone (plan and interval are kept on one row)
    keeps that part, as a new row with the same effective instant."""
    changing = {name for name, direction in parts.items() if direction != "none"}
    superseded = []
    for row in (
        subscription.scheduled_changes.select_for_update(of=("self",))
        .select_related("plan", "addon", "addon_tier")
        .filter(status=ScheduledChange.Status.SCHEDULED)
    ):
        hits_plan = "plan" in changing and row.plan_id is not None
        hits_interval = "interval" in changing and bool(row.interval)
        hits_addon = row.addon_id is not None and f"addon:{row.addon.code}" in changing
        if not (hits_plan or hits_interval or hits_addon):
            continue
        row.status = ScheduledChange.Status.CANCELED
        row.resolved_at = at
        row.save(update_fields=["status", "resolved_at"])
        superseded.append(row)
        kept_plan = row.plan if row.plan_id and not hits_plan else None
        kept_interval = row.interval if row.interval and not hits_interval else ""
        kept = None
        if kept_plan is not None or kept_interval:
            kept = ScheduledChange.objects.create(
                subscription=subscription,
                plan=kept_plan,
                interval=kept_interval,
                effective_at=row.effective_at,
            )
        # One row per replaced change, saying what of it still stands (the part kept).
        audit_record(
            action="subscription.change_superseded",
            obj=subscription,
            before=row.as_audit(),
            after=kept.as_audit() if kept else None,
            reason="replaced by a later request for the same item",
            at=at,
        )
    return superseded


def _schedule(subscription, plan, interval, tiers) -> ChangeResult:
    """P7: one scheduled row per part, all at the end of the current cycle."""
    at = subscription.current_period_end
    rows = []
    if (plan is not None and plan != subscription.plan) or (
        interval and interval != subscription.interval
    ):
        rows.append(
            ScheduledChange(
                subscription=subscription, plan=plan, interval=interval or "", effective_at=at
            )
        )
    current = {item.addon_id: item.tier_id for item in subscription.addons.all()}
    for addon, tier in tiers.items():
        if current.get(addon.pk) != (tier.pk if tier else None):
            rows.append(
                ScheduledChange(
                    subscription=subscription, addon=addon, addon_tier=tier, effective_at=at
                )
            )
    for row in rows:
        row.full_clean()
        row.save()
        audit_record(
            action="subscription.change_scheduled",
            obj=subscription,
            after=row.as_audit(),
            at=row.created_at,
        )
    return ChangeResult(effective="period_end", effective_at=at, scheduled=rows)


@dataclass(frozen=True)
class ChangePreview:
    """What a change would do, before it is confirmed: its kind, when it applies, and for an
    upgrade the lines charged at once."""

    kind: str  # "upgrade" | "downgrade" | "none"
    effective_at: datetime
    lines: tuple[pricing.Line, ...] = ()
    credit_balance_minor: int = 0  # the account's credit, which the upgrade invoice spends

    @property
    def total_minor(self) -> int:
        return pricing.invoice_total(self.lines)

    @property
    def credit_minor(self) -> int:
        """The account credit the upgrade invoice takes off (invoicing._apply_credits)."""
        return min(self.credit_balance_minor, max(self.total_minor, 0))

    @property
    def charged_now_minor(self) -> int:
        """What is charged at once: the lines less the account's credit, never below zero."""
        return max(self.total_minor, 0) - self.credit_minor


def subscription_change_preview(
    *, account: Account, request: ChangeRequest, at: datetime | None = None
) -> ChangePreview:
    """The same decision and lines as subscription_change, written nowhere (the page shows
    them before the merchant confirms)."""
    at = at or timezone.now()
    subscription = (
        Subscription.objects.select_related("account", "plan", "edition")
        .filter(account=account, ended_at__isnull=True)
        .first()
    )
    if subscription is None:
        raise NotFound(f"Account '{account.slug}' has no subscription.")
    if subscription.edition_id:
        raise Conflict("Per-agent editions are changed by an operator.", code="edition_change")
    plan, tiers = _resolve(subscription, request)
    current = subscription_terms(subscription)
    requested = subscription_terms(subscription, plan=plan, interval=request.interval, tiers=tiers)
    kind = pricing.classify_change(current=current, requested=requested)
    if kind == "downgrade":
        _refuse_if_ending(subscription)
    if kind != "upgrade":
        return ChangePreview(kind=kind, effective_at=subscription.current_period_end)
    lines, _ = _upgrade_lines(subscription, current, requested, at)
    credit = statement.account_statement(account=account).credit_balance_minor
    return ChangePreview(
        kind=kind, effective_at=at, lines=tuple(lines), credit_balance_minor=credit
    )


def _upgrade_lines(subscription, current, requested, at):
    """The upgrade's invoice lines and, for month → year, the annual cycle it starts. The
    current month becomes the first month of that cycle: nothing is re-anchored, so no usage
    period ever changes shape."""
    cycle = pricing.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    migrated = subscription.is_migrated and not subscription.closes.exists()
    new_cycle = None
    if requested.interval != current.interval:
        start, end = periods.cycle_starting(
            subscription.billing_anchor, cycle.start, requested.interval
        )
        new_cycle = pricing.Period(start=start, end=end)
    lines = pricing.upgrade_lines(
        current=current,
        requested=requested,
        cycle=cycle,
        at=at,
        new_cycle=new_cycle,
        is_migrated=migrated,
    )
    return lines, new_cycle


def terms_words(terms: pricing.SubscriptionTerms) -> dict:
    """What a subscription pays for, as the audit log keeps it."""
    return {
        "plan": terms.plan.code if terms.plan else None,
        "edition": terms.edition.code if terms.edition else None,
        "interval": terms.interval,
        "addons": {a.addon: a.tier for a in terms.addons},
    }


def _upgrade(
    subscription, current, requested, plan, interval, tiers, at, *, prorate: bool = True
) -> ChangeResult:
    """P6: the difference for the rest of the cycle is charged now and the new allowance
    applies to the current period (month → year: see _upgrade_lines)."""
    cycle = pricing.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    lines, new_cycle = _upgrade_lines(subscription, current, requested, at)
    invoice = None
    if prorate:
        invoice = invoice_issue(
            subscription=subscription,
            account_id=subscription.account_id,
            currency=subscription.account.currency,
            reason=InvoiceReason.UPGRADE,
            period=pricing.Period(start=at, end=(new_cycle or cycle).end),
            lines=lines,
            at=at,
        )
    if plan is not None:
        subscription.plan = plan
    for addon, tier in tiers.items():
        if tier is None:
            SubscriptionAddOn.objects.filter(subscription=subscription, addon=addon).delete()
        else:
            SubscriptionAddOn.objects.update_or_create(
                subscription=subscription, addon=addon, defaults={"tier": tier, "started_at": at}
            )
    if new_cycle is not None:
        subscription.interval = interval
        subscription.current_period_end = new_cycle.end
        # Downgrades scheduled for the month's end now wait for the annual cycle's end (P7):
        # say so on them, or the account would show a date on which nothing happens.
        subscription.scheduled_changes.filter(status=ScheduledChange.Status.SCHEDULED).update(
            effective_at=new_cycle.end
        )
    subscription.save()
    outbox.subscription_changed_emit(
        subscription,
        effective="now",
        shopify=shopify_figures.webhook_figures(subscription.account_id),
    )
    audit_record(
        action="subscription.upgraded",
        obj=subscription,
        before=terms_words(current),
        after=terms_words(requested),
        reason=f"invoice {invoice.number}" if invoice else "prorated by Shopify",
        at=at,
    )
    if tiers:
        # C2: a higher Convert tier lifts a pause at once (limits are otherwise re-applied
        # only when clicks arrive).
        metering_limits.limits_reapply(subscription=subscription, as_of=at)
    return ChangeResult(effective="now", effective_at=at, invoice=invoice)


def scheduled_change_cancel(*, account: Account, change_id: int) -> ScheduledChange:
    """Cancel a scheduled change until it takes effect (a scheduled end too: the subscription
    then renews as before)."""
    with transaction.atomic():
        change = (
            ScheduledChange.objects.select_for_update()
            .filter(pk=change_id, subscription__account=account)
            .first()
        )
        if change is None:
            raise NotFound(f"No scheduled change {change_id}.")
        if change.status != ScheduledChange.Status.SCHEDULED:
            raise Conflict(
                f"This change is already {change.status}.", details={"status": change.status}
            )
        change.status = ScheduledChange.Status.CANCELED
        change.resolved_at = timezone.now()
        change.save(update_fields=["status", "resolved_at"])
        # Undoing the end is a fact of its own for whoever reads the log: the renewal stands.
        undone = "cancel_undone" if change.cancel else "change_canceled"
        audit_record(
            action=f"subscription.{undone}",
            obj=change.subscription,
            before=change.as_audit(),
            after=ScheduledChange.Status.CANCELED,
            at=change.resolved_at,
        )
        if change.cancel:
            # The row was locked and still scheduled (a second undo got the Conflict above):
            # this email goes once.
            subscription = change.subscription
            notifications.send(
                "cancellation_undone",
                account,
                also=notifications.billing_managers(account),
                last_day=periods.format_last_day(subscription.current_period_end),
                first_day=periods.format_day(subscription.current_period_end),
            )
        return change


CANCEL_COMMENT_MAX = 1000  # ScheduledChange.cancel_comment's max_length


def subscription_cancel_at_period_end(
    *, account: Account, reason: str = "", comment: str = ""
) -> tuple[ScheduledChange, bool]:
    """Schedule the subscription's end at the end of its cycle, like a downgrade (P7): it stays
    active until then, its last usage period is closed and invoiced as usual, no fee follows.
    `reason` (a ScheduledChange.Reason, or "") and `comment` say why, both optional. Returns
    the scheduled change and whether it is new: asking twice finds the first one (and its
    reason). Undone with scheduled_change_cancel until it takes effect."""
    comment = comment.strip()
    if reason not in ("", *ScheduledChange.Reason.values):
        raise DomainError(f"Unknown reason '{reason}'.", details={"field": "reason"})
    if len(comment) > CANCEL_COMMENT_MAX:
        raise DomainError(
            f"Keep the comment under {CANCEL_COMMENT_MAX:,} characters.",
            details={"field": "comment"},
        )
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",))
            .filter(account=account, ended_at__isnull=True)
            .first()
        )
        if subscription is None:
            raise NotFound(f"Account '{account.slug}' has no subscription.")
        existing = subscription.scheduled_changes.filter(
            cancel=True, status=ScheduledChange.Status.SCHEDULED
        ).first()
        if existing is not None:
            return existing, False
        change = ScheduledChange(
            subscription=subscription,
            cancel=True,
            effective_at=subscription.current_period_end,
            cancel_reason=reason,
            cancel_comment=comment,
        )
        change.full_clean()
        change.save()
        audit_record(
            action="subscription.cancel_scheduled",
            obj=subscription,
            after=change.as_audit(),
            reason="ends at the end of the cycle (P7)",
            at=change.created_at,
        )
        # The last usage period: the one the final invoice closes (a month on a yearly cycle).
        last_period = periods.usage_period_containing(
            subscription.billing_anchor,
            change.effective_at - timedelta(microseconds=1),
            subscription.interval,
        )
        notifications.send(
            "cancellation_scheduled",
            account,
            also=notifications.billing_managers(account),
            last_day=periods.format_last_day(change.effective_at),
            first_day=periods.format_day(change.effective_at),
            last_period=periods.format_period(*last_period),
        )
        return change, True
