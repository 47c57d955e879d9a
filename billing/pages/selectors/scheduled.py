"""The banner on every tab: the changes scheduled for the cycle's end (P7), in words."""

from dataclasses import dataclass
from datetime import date, datetime

from accounts.models import Account
from plans.models import Interval, ScheduledChange

from .common import last_day


@dataclass(frozen=True)
class ScheduledRow:
    id: int
    words: str
    effective_at: datetime
    cancel: bool = False  # the subscription ends: `ends_on` is its last day

    @property
    def ends_on(self) -> date:
        return last_day(self.effective_at)


def scheduled_changes(*, account: Account) -> list[ScheduledRow]:
    """Each change waiting for the cycle's end (P7), described in words: "Pro → Basic".

    While a cancellation is scheduled it is the only one shown: the subscription ends at that
    boundary, so a downgrade scheduled for it will never apply. The downgrade is kept, as
    Stripe keeps a schedule under cancel_at_period_end: undoing the cancellation brings it
    back (docs/billing-page.md)."""
    rows = (
        ScheduledChange.objects.filter(
            subscription__account=account,
            subscription__ended_at__isnull=True,
            status=ScheduledChange.Status.SCHEDULED,
        )
        .select_related("subscription__plan", "plan", "addon", "addon_tier")
        .order_by("effective_at", "pk")
    )
    result = []
    for change in rows:
        subscription = change.subscription
        parts = []
        if change.plan_id:
            parts.append(f"{subscription.plan} → {change.plan} plan")
        if change.interval:
            before = subscription.get_interval_display()
            after = dict(Interval.choices)[change.interval]
            parts.append(f"billing {before} → {after}")
        if change.addon_id:
            current = subscription.addons.filter(addon=change.addon).select_related("tier").first()
            before = current.tier.name if current else "none"
            after = change.addon_tier.name if change.addon_tier else "removed"
            parts.append(f"{change.addon} add-on: {before} → {after}")
        if change.cancel:
            parts.append("your subscription ends")
        result.append(
            ScheduledRow(
                id=change.pk,
                words="; ".join(parts),
                effective_at=change.effective_at,
                cancel=change.cancel,
            )
        )
    if any(row.cancel for row in result):
        return [row for row in result if row.cancel]
    return result
