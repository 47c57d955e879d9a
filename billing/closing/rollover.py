"""Rolling a closed period over: scheduled changes (P7), a cancellation at the cycle's end,
the next stored periods."""

from datetime import datetime

from audit.services import audit_record
from metering import limits as metering_limits
from outbox import services as outbox
from plans import periods, pricing
from plans.models import ScheduledChange, Subscription, SubscriptionAddOn
from plans.services import subscription_transition

from .. import notifications, shopify_figures
from ..models import Invoice


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
    outbox.subscription_changed_emit(
        subscription,
        effective="period_end",
        shopify=shopify_figures.webhook_figures(subscription.account_id),
    )


def _end_subscription(
    subscription: Subscription,
    changes: list[ScheduledChange],
    *,
    at: datetime,
    invoice: Invoice | None = None,
) -> None:
    """A scheduled cancellation takes effect at the cycle's end: the subscription ends (no
    longer live, so never closed again), its features are switched off, the other changes
    scheduled for the same moment have nothing left to change, and the merchant is told, with
    the final invoice (the last period's, just issued)."""
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
    # Once: an ended subscription is never closed again, and a close that fails rolls this
    # back with the rest (the email leaves after the commit).
    account = subscription.account
    notifications.send(
        "subscription_ended",
        account,
        also=notifications.billing_managers(account),
        invoice=invoice,
        last_day=periods.format_last_day(at),
    )


def _advance(
    subscription: Subscription, *, closed_end: datetime, next_cycle: pricing.Period | None
) -> None:
    """Move the stored periods on (in memory; the caller saves): the next monthly usage
    period, and at a cycle's end the next cycle."""
    subscription.usage_period_start, subscription.usage_period_end = (
        periods.usage_period_containing(
            subscription.billing_anchor, closed_end, subscription.interval
        )
    )
    if next_cycle is not None:
        subscription.current_period_start, subscription.current_period_end = (
            next_cycle.start,
            next_cycle.end,
        )
