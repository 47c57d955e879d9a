"""Read paths of metering: usage per period, a ticket's explanation, entitlements.

Usage comes from the small indexed table of per-unit verdicts (`Charge`), never from events.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count

from accounts.models import Account
from plans import periods, pricing
from plans.models import Subscription
from plans.terms import meter_terms_by_meter, subscription_terms

from .models import Charge, ChargeStatus, Entitlement, Feature, SubjectKind
from .rules import types as t


@dataclass(frozen=True)
class MeterUsage:
    meter: str
    used: int  # final units billed in the period
    pending: int  # units whose window is still open (A5, Z2–Z7)
    not_billed: int  # recorded over a hard cap or a paused limit (C2, Z9)
    late: int  # units of earlier, closed periods that arrived during this one (F6)
    included: int | None  # None: the subscription does not pay for this meter
    overage_units: int
    overage_amount_minor: int
    forecast_units: int
    forecast_amount_minor: int


@dataclass(frozen=True)
class PeriodUsage:
    start: datetime
    end: datetime
    currency: str
    meters: list[MeterUsage]


def usage_period(
    *, subscription: Subscription, month: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """The monthly usage period starting in `month` ("YYYY-MM"), or the one containing now."""
    anchor = subscription.billing_anchor
    if month is None:
        return periods.usage_period_containing(anchor, now)
    year, mon = (int(part) for part in month.split("-"))
    months_from_anchor = (year - anchor.year) * 12 + (mon - anchor.month)
    return periods.period_bounds(anchor, periods.MONTH, months_from_anchor)


def _counts(account: Account, start: datetime) -> dict[tuple[str, str], int]:
    rows = (
        Charge.objects.filter(account=account, period_start=start)
        .exclude(status=ChargeStatus.NOT_COUNTED)
        .values_list("meter", "status")
        .annotate(n=Count("id"))
    )
    return {(meter, status): n for meter, status, n in rows}


def _late(account: Account, start: datetime, end: datetime) -> dict[str, int]:
    rows = (
        Charge.objects.filter(
            account=account,
            period_start__lt=start,
            recorded_at__gte=start,
            recorded_at__lt=end,
            status=ChargeStatus.FINAL,
        )
        .values_list("meter")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def usage_summary(
    *, account: Account, subscription: Subscription, start: datetime, end: datetime, now: datetime
) -> PeriodUsage:
    """Per meter: used, pending, not billed, late, what is included, overage and a forecast."""
    counts = _counts(account, start)
    late = _late(account, start, end)
    terms = subscription_terms(subscription)
    by_meter = meter_terms_by_meter(terms)
    # The forecast assumes the rest of the period goes at the same pace (integer maths).
    total = int((end - start).total_seconds())
    elapsed = min(max(int((now - start).total_seconds()), 0), total)
    used_earlier = _resolutions_earlier_in_year(account, subscription, start)
    meters = []
    for meter in t.METERS:
        used = counts.get((meter, ChargeStatus.FINAL), 0)
        pending = counts.get((meter, ChargeStatus.PENDING), 0)
        capped = counts.get((meter, ChargeStatus.CAPPED), 0)
        meter_terms = by_meter.get(meter)
        forecast = used + pending
        if 0 < elapsed < total:
            forecast = (forecast * total + elapsed // 2) // elapsed
        overage_units, amount, forecast_amount = _overage(
            meter, meter_terms, terms, used, forecast, used_earlier, start, end
        )
        meters.append(
            MeterUsage(
                meter=meter,
                used=used,
                pending=pending,
                not_billed=capped,
                late=late.get(meter, 0),
                included=meter_terms.included if meter_terms else None,
                overage_units=overage_units,
                overage_amount_minor=amount,
                forecast_units=forecast,
                forecast_amount_minor=forecast_amount,
            )
        )
    return PeriodUsage(start=start, end=end, currency=account.currency, meters=meters)


def _overage(
    meter, meter_terms, terms, used, forecast, used_earlier, start, end
) -> tuple[int, int, int]:
    if meter_terms is None:
        return 0, 0, 0
    if meter == t.AUTOMATED_RESOLUTIONS:
        # Overage on resolutions is against the allocation year, billed monthly (Z9).
        period = pricing.Period(start=start, end=end)

        def line(n):
            return pricing.resolution_overage_line(
                edition=terms.edition, used_this_month=n, used_earlier=used_earlier, period=period
            )

        now_line, forecast_line = line(used), line(forecast)
        return (
            now_line.quantity if now_line else 0,
            now_line.amount_minor if now_line else 0,
            forecast_line.amount_minor if forecast_line else 0,
        )
    return (
        pricing.extra_units(terms=meter_terms, used=used)
        if meter_terms.policy != "hard_cap"
        else 0,
        pricing.overage_amount_minor(terms=meter_terms, used=used),
        pricing.overage_amount_minor(terms=meter_terms, used=forecast),
    )


def _resolutions_earlier_in_year(
    account: Account, subscription: Subscription, start: datetime
) -> int:
    year_start, _ = periods.period_containing(subscription.billing_anchor, periods.YEAR, start)
    return Charge.objects.filter(
        account=account,
        meter=t.AUTOMATED_RESOLUTIONS,
        status=ChargeStatus.FINAL,
        period_start__gte=year_start,
        period_start__lt=start,
    ).count()


def ticket_billing(*, account: Account, ticket: str) -> list[Charge]:
    """The verdicts on one ticket, every meter, with the rule ids that decided them."""
    return list(
        Charge.objects.filter(
            account=account, subject_kind=SubjectKind.TICKET, subject=ticket
        ).order_by("meter", "unit")
    )


def entitlements(*, account: Account, subscription: Subscription | None) -> dict[str, dict]:
    """What the account may use now: active unless paused (C2, Z9) or suspended (F4)."""
    states = {
        feature: {"state": "active", "until": None, "reason": ""} for feature in Feature.values
    }
    for row in Entitlement.objects.filter(account=account):
        states[row.feature] = {"state": row.state, "until": row.until, "reason": row.reason}
    if subscription is not None and subscription.status == Subscription.Status.SUSPENDED:
        states[Feature.HELPDESK] = {
            "state": "suspended",
            "until": None,
            "reason": "Unpaid invoice (F4).",
        }
    return states
