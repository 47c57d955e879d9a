"""Account-level limits on counted units: Convert's hard cap (C2) and the AI pause (Z9).

The rules engine decides per subject; a cap is a property of an account and a period, so it
is re-applied over all of the period's counted units, ordered by when they became billable.
A late click stamped earlier than others therefore takes its place in the order: arrival
order never decides who is billed.
"""

from datetime import datetime

from django.db.models import Q

from plans import periods, pricing
from plans.models import Subscription
from plans.terms import meter_terms_by_meter, subscription_terms

from .models import Charge, ChargeStatus, Entitlement, Feature
from .rules import types as t

_COUNTED = [ChargeStatus.FINAL, ChargeStatus.PENDING, ChargeStatus.CAPPED]


def apply_limits(*, touched: set[tuple[int, str, datetime]], as_of: datetime) -> None:
    """Re-apply caps to the (account, meter, period) triples that gained or lost units."""
    accounts = {
        a for a, meter, _ in touched if meter in (t.CONVERT_CLICKS, t.AUTOMATED_RESOLUTIONS)
    }
    if not accounts:
        return
    subscriptions = {
        s.account_id: s
        for s in Subscription.objects.filter(
            account_id__in=accounts, ended_at__isnull=True
        ).select_related("account", "plan", "edition")
    }
    for account_id, meter, period_start in sorted(touched):
        subscription = subscriptions.get(account_id)
        if meter == t.CONVERT_CLICKS:
            convert_cap(
                account_id=account_id,
                subscription=subscription,
                period_start=period_start,
                as_of=as_of,
            )
        elif meter == t.AUTOMATED_RESOLUTIONS and subscription is not None:
            resolutions_limit(subscription=subscription, period_start=period_start, as_of=as_of)


def _cap_rows(rows: list[Charge], billed: set[int], rule: str) -> None:
    """Mark rows billed or capped; a capped row cites the rule that capped it."""
    changed = []
    for row in rows:
        base = [r for r in row.rules if r != rule]
        if row.pk in billed:
            status = ChargeStatus.PENDING if row.pending_until else ChargeStatus.FINAL
            new = (status, base)
        else:
            new = (ChargeStatus.CAPPED, [*base, rule])
        if (row.status, row.rules) != new:
            row.status, row.rules = new
            changed.append(row)
    Charge.objects.bulk_update(changed, ["status", "rules"], batch_size=1000)


def _ordered(account_id: int, meter: str, start: datetime, end: datetime) -> list[Charge]:
    return list(
        Charge.objects.filter(
            account_id=account_id,
            meter=meter,
            status__in=_COUNTED,
            billable_at__gte=start,
            billable_at__lt=end,
        ).order_by("billable_at", "subject", "unit")
    )


def convert_cap(
    *, account_id: int, subscription: Subscription | None, period_start: datetime, as_of: datetime
) -> None:
    """C2: beyond the Convert tier's clicks, clicks are recorded, not billed, and campaigns
    pause until the period ends. No Convert add-on means no billable click at all."""
    limit = 0
    if subscription is not None:
        terms = meter_terms_by_meter(subscription_terms(subscription)).get(t.CONVERT_CLICKS)
        limit = terms.included if terms else 0
        anchor = subscription.billing_anchor
    else:
        anchor = period_start
    _, period_end = periods.usage_period_containing(anchor, period_start)
    rows = _ordered(account_id, t.CONVERT_CLICKS, period_start, period_end)
    _cap_rows(rows, {row.pk for row in rows[:limit]}, "C2")
    if period_start <= as_of < period_end:  # only the current period drives what is shown now
        reached = len(rows) >= limit
        _set_entitlement(
            account_id,
            Feature.CONVERT_CAMPAIGNS,
            reached,
            period_end,
            f"Convert limit of {limit} clicks reached (C2).",
        )


def resolutions_limit(
    *, subscription: Subscription, period_start: datetime, as_of: datetime
) -> None:
    """Z9: the account's own monthly limit pauses AI until next month; with `pause`, so does
    the allocation (plus commitment) of the allocation year. Paused resolutions are not billed."""
    terms = subscription_terms(subscription)
    monthly = subscription.ai_monthly_limit
    yearly = None
    year_start, year_end = periods.period_containing(
        subscription.billing_anchor, "year", period_start
    )
    if terms.edition is not None and subscription.ai_at_limit == Subscription.AtLimit.PAUSE:
        yearly = pricing.resolution_limit(edition=terms.edition)
    rows = _ordered(subscription.account_id, t.AUTOMATED_RESOLUTIONS, year_start, year_end)
    anchor = subscription.billing_anchor
    billed, in_year, in_month = set(), 0, {}
    for row in rows:
        month = periods.usage_period_containing(anchor, row.billable_at)[0]
        if (yearly is None or in_year < yearly) and (
            monthly is None or in_month.get(month, 0) < monthly
        ):
            billed.add(row.pk)
            in_year += 1
            in_month[month] = in_month.get(month, 0) + 1
    _cap_rows(rows, billed, "Z9")
    month_start, month_end = periods.usage_period_containing(anchor, as_of)
    if year_start <= as_of < year_end:
        if yearly is not None and in_year >= yearly:
            _set_entitlement(
                subscription.account_id,
                Feature.AI_AGENTS,
                True,
                year_end,
                f"Automated-resolution limit of {yearly} reached (Z9).",
            )
        elif monthly is not None and in_month.get(month_start, 0) >= monthly:
            _set_entitlement(
                subscription.account_id,
                Feature.AI_AGENTS,
                True,
                month_end,
                f"Monthly limit of {monthly} automated resolutions reached (Z9).",
            )
        else:
            _set_entitlement(subscription.account_id, Feature.AI_AGENTS, False, None, "")


def _set_entitlement(account_id: int, feature: str, paused: bool, until, reason: str) -> None:
    state = Entitlement.State.PAUSED if paused else Entitlement.State.ACTIVE
    Entitlement.objects.update_or_create(
        account_id=account_id,
        feature=feature,
        defaults={
            "state": state,
            "until": until if paused else None,
            "reason": reason if paused else "",
        },
    )


def entitlements_expire(*, as_of: datetime) -> int:
    """Pauses end with their period: campaigns and AI run again in the next one."""
    return Entitlement.objects.filter(
        ~Q(state=Entitlement.State.SUSPENDED), state=Entitlement.State.PAUSED, until__lte=as_of
    ).update(state=Entitlement.State.ACTIVE, until=None, reason="")
