"""The cancellation's confirmation step: what ends when, and what is still invoiced, before
the merchant confirms."""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from accounts.models import Account
from plans import periods
from plans.models import Subscription

from ... import statement
from ...models import PaymentMethod
from ...payments import default_payment_method
from .scheduled import ScheduledRow, scheduled_changes
from .usage import usage


@dataclass(frozen=True)
class CancelPreview:
    ends_at: datetime  # the cycle's end: service until the day before, nothing from it
    last_period: tuple[datetime, datetime]  # the usage period the final invoice closes
    currency: str
    # The period under way is the last one (always on a monthly cycle; the last month of a
    # yearly one): its overage so far and at this pace, which the final invoice will carry.
    last_period_under_way: bool = False
    overage_so_far_minor: int = 0
    overage_forecast_minor: int = 0
    card: PaymentMethod | None = None
    credit_balance_minor: int = 0  # taken off the final invoice first
    # Changes scheduled for the same boundary: they never apply if the subscription ends there.
    not_applying: list[ScheduledRow] = field(default_factory=list)


def cancel_preview(*, account: Account, subscription: Subscription, now: datetime) -> CancelPreview:
    end = subscription.current_period_end
    last = periods.usage_period_containing(
        subscription.billing_anchor, end - timedelta(microseconds=1), subscription.interval
    )
    preview = CancelPreview(
        ends_at=end,
        last_period=last,
        currency=account.currency,
        card=default_payment_method(account.pk),
        credit_balance_minor=statement.account_statement(account=account).credit_balance_minor,
        not_applying=[row for row in scheduled_changes(account=account) if not row.cancel],
    )
    shown = usage(account=account, now=now, subscription=subscription)
    if shown is None or (shown.start, shown.end) != last:
        return preview
    return replace(
        preview,
        last_period_under_way=True,
        overage_so_far_minor=sum(m.overage_minor for m in shown.meters),
        overage_forecast_minor=sum(m.forecast_minor for m in shown.meters),
    )
