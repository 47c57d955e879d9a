"""Read paths of metering: usage per period, a ticket's explanation, entitlements.

Usage comes from the small indexed table of per-unit verdicts (`Charge`), never from events.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Sum

from accounts.models import Account
from plans import periods, pricing
from plans.models import Subscription
from plans.terms import allocation_term, meter_terms_by_meter, subscription_terms

from .models import Charge, ChargeStatus, Entitlement, Feature, SubjectKind, UsageDay, UsageHold
from .rules import types as t

# A pace needs time behind it: 34 seconds into a month, one SMS "projects" to 1.9 million.
# Before this much of the period has passed, the forecast leans on the last period instead.
FORECAST_MIN_ELAPSED = timedelta(days=3)
# The feature a pause stops, per meter: while it is paused, nothing more is counted (C2, Z9).
_PAUSED_BY = {
    t.CONVERT_CLICKS: Feature.CONVERT_CAMPAIGNS,
    t.AUTOMATED_RESOLUTIONS: Feature.AI_AGENTS,
}


@dataclass(frozen=True)
class MeterUsage:
    meter: str
    used: int  # final units billed in the period
    pending: int  # units whose window is still open (A5, Z2–Z7)
    not_billed: int  # recorded over a hard cap or a paused limit (C2, Z9)
    late: int  # units of closed periods not invoiced yet, billed on the open period's (F6)
    included: int | None  # None: the subscription does not pay for this meter
    overage_units: int
    overage_amount_minor: int
    forecast_units: int
    forecast_amount_minor: int
    # How the forecast was made: "pace" (this period's pace so far), "last_period" (too early
    # for a pace: the last period's count), "so_far" (too early and no history: what is counted
    # now), "final" (the period is over), "paused" (the feature is paused: no more units),
    # "capped" (a projection cut at a hard cap or a pause limit); `forecast_note` says it in words.
    forecast_method: str
    forecast_note: str
    # The most units the period can still end with (a hard cap, the AI limits), or None.
    forecast_ceiling: int | None
    # From this instant on the forecast projects the period's pace (FORECAST_MIN_ELAPSED).
    forecast_pace_from: datetime
    # Taken out of billing by an accepted dispute (billing.ticket_disputes): kept, never billed.
    excluded: int = 0
    # Held for review by the spike guard (metering.holds): not billed, not in the forecast,
    # until released (then billed) or excluded.
    held: int = 0


@dataclass(frozen=True)
class PeriodUsage:
    start: datetime
    end: datetime
    currency: str
    meters: list[MeterUsage]


@dataclass(frozen=True)
class BilledSpan:
    """The usage periods one subscription bills: the periods of its anchor's monthly grid from
    the one it began in (for a customer migrated mid-cycle, the period already under way, P1)
    up to its end. A unit counted in any other period is on no invoice, ever."""

    anchor: datetime
    start: datetime  # the start of its first usage period
    end: datetime | None  # when it ended; None while it is live
    interval: str = periods.MONTH  # the subscription's: a 30d one has 30-day usage periods

    def holds(self, period_start: datetime) -> bool:
        return (
            self.start <= period_start
            and (self.end is None or period_start < self.end)
            and periods.usage_period_containing(self.anchor, period_start, self.interval)[0]
            == period_start
        )


def _span(subscription: Subscription) -> BilledSpan:
    anchor, interval = subscription.billing_anchor, subscription.interval
    first, _ = periods.usage_period_containing(anchor, subscription.started_at, interval)
    return BilledSpan(anchor, first, subscription.ended_at, interval)


def billed_spans(*, account: Account) -> list[BilledSpan]:
    """The account's subscriptions as the usage periods each bills, oldest first."""
    return [
        _span(subscription)
        for subscription in Subscription.objects.filter(account=account).order_by(
            "started_at", "pk"
        )
    ]


@dataclass(frozen=True)
class NeverBilled:
    """Why a unit the rules count is on no invoice: `code` for programs, `message` for people."""

    code: str  # before_subscription | no_subscription
    message: str


def never_billed(
    *, period_start: datetime, billable_at: datetime, spans: list[BilledSpan]
) -> NeverBilled | None:
    """None when a subscription bills the unit's usage period; else why none does. Such units
    are events of days no subscription covered: ingest refuses those dated before the first
    one (metering.services), but the gap between an end and a start again is still recorded,
    and so are events stored before ingest refused them."""
    if any(span.holds(period_start) for span in spans):
        return None
    day = f"{billable_at:%Y-%m-%d}"
    never = "no period of the account holds it, so no invoice bills it"
    if spans and period_start < spans[0].start:
        began = f"{spans[0].start:%Y-%m-%d}"
        return NeverBilled(
            "before_subscription",
            f"Billable on {day}, before the account's first subscription began ({began}): {never}.",
        )
    return NeverBilled(
        "no_subscription", f"Billable on {day}, while the account had no subscription: {never}."
    )


def usage_period(
    *, subscription: Subscription, month: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """The usage period starting in `month` ("YYYY-MM"), or the one containing now."""
    anchor, interval = subscription.billing_anchor, subscription.interval
    if month is None:
        return periods.usage_period_containing(anchor, now, interval)
    year, mon = (int(part) for part in month.split("-"))
    if periods.usage_interval(interval) == periods.DAYS_30:
        # 30-day periods drift across months: the first one starting in that month, or (a
        # February that none starts in) the one running at its start.
        first_day = datetime(year, mon, 1, tzinfo=UTC)
        start, end = periods.usage_period_containing(anchor, first_day, interval)
        following = periods.usage_period_containing(anchor, end, interval)
        if start < first_day and (following[0].year, following[0].month) == (year, mon):
            return following
        return start, end
    months_from_anchor = (year - anchor.year) * 12 + (mon - anchor.month)
    return periods.period_bounds(anchor, periods.MONTH, months_from_anchor)


def usage_period_of_account(
    *, account: Account, month: str | None, now: datetime
) -> tuple[Subscription, datetime, datetime] | None:
    """The usage period asked for and the subscription whose period it is. For `month`, the
    subscription in force in the period starting that month on its own anchor (an ended
    one's periods stay readable after its end, F6); a month no subscription was in force in
    falls back to the newest. Without `month`, the live subscription's period containing now
    or, when none is live, the ended one's last period. None: never a subscription."""
    subscriptions = list(
        Subscription.objects.filter(account=account)
        .select_related("account", "plan", "edition")
        .order_by("-started_at", "-pk")
    )
    if not subscriptions:
        return None
    live = next((s for s in subscriptions if s.ended_at is None), None)
    if month is None:
        if live is not None:
            return live, *usage_period(subscription=live, month=None, now=now)
        last = subscriptions[0]  # its periods stay those of its last close
        return last, last.usage_period_start, last.usage_period_end
    for subscription in subscriptions:
        start, end = usage_period(subscription=subscription, month=month, now=now)
        if start < (subscription.ended_at or end) and subscription.started_at < end:
            return subscription, start, end
    newest = live or subscriptions[0]
    return newest, *usage_period(subscription=newest, month=month, now=now)


def period_units(
    *, account: Account, starts: list[datetime], meter: str | None = None
) -> dict[tuple[datetime, str, str], int]:
    """Counted units per (period start, meter, status) of the given usage periods, from the
    per-day counters (O(days) rows read, never the charges themselves)."""
    if not starts:
        return {}
    rows = UsageDay.objects.filter(account=account, period_start__in=starts)
    if meter is not None:
        rows = rows.filter(meter=meter)
    grouped = rows.values_list("period_start", "meter", "status").annotate(n=Sum("units"))
    return {(start, m, status): n for start, m, status, n in grouped if n}


def daily_units(*, account: Account, start: datetime, statuses: tuple[str, ...]) -> dict[str, dict]:
    """Units per meter and UTC day (of becoming billable) in the usage period starting at
    `start`, in the given statuses."""
    grouped = (
        UsageDay.objects.filter(account=account, period_start=start, status__in=statuses)
        .values_list("meter", "day")
        .annotate(n=Sum("units"))
    )
    result: dict[str, dict] = {}
    for meter, day, n in grouped:
        if n:
            result.setdefault(meter, {})[day] = n
    return result


def usage_summary(
    *,
    account: Account,
    subscription: Subscription,
    start: datetime,
    end: datetime,
    now: datetime,
    late: Mapping[str, int] | None = None,
    terms: pricing.SubscriptionTerms | None = None,
) -> PeriodUsage:
    """Per meter: used, pending, not billed, excluded, late, what is included, overage and a
    forecast that says how it was made. `late` is the caller's late units per meter (F6; 0
    without): what was invoiced is billing's to know (billing.selectors.late_units_shown)."""
    previous_start, _ = periods.usage_period_containing(
        subscription.billing_anchor, start - timedelta(microseconds=1), subscription.interval
    )
    # Only periods a subscription bills: the units of a month before the first subscription or
    # between an end and a start again are on no invoice, so they are used in no period (the
    # ticket's answer says so too: `never_billed`).
    spans = billed_spans(account=account)
    billed = [s for s in (start, previous_start) if any(span.holds(s) for span in spans)]
    both = period_units(account=account, starts=billed)
    counts = {(m, status): n for (s, m, status), n in both.items() if s == start}
    previous = {(m, status): n for (s, m, status), n in both.items() if s == previous_start}
    late = late or {}
    terms = terms or subscription_terms(subscription)  # the caller's, when it has them
    by_meter = meter_terms_by_meter(terms)
    paused = {
        row.feature
        for row in Entitlement.objects.filter(account=account, state=Entitlement.State.PAUSED)
        if row.until is None or row.until > now
    }
    # Only an edition has an allocation term whose earlier months count (Z9).
    used_earlier = (
        _resolutions_earlier_in_term(account, subscription, start) if terms.edition else 0
    )
    meters = []
    for meter in t.METERS:
        used = counts.get((meter, ChargeStatus.FINAL), 0)
        pending = counts.get((meter, ChargeStatus.PENDING), 0)
        capped = counts.get((meter, ChargeStatus.CAPPED), 0)
        meter_terms = by_meter.get(meter)
        ceiling = _ceiling(meter, meter_terms, subscription, terms, used_earlier)
        forecast = _forecast(
            used + pending,
            previous.get((meter, ChargeStatus.FINAL), 0),
            start=start,
            end=end,
            now=now,
            is_paused=_PAUSED_BY.get(meter) in paused and start <= now < end,
            ceiling=ceiling,
        )
        overage_units, amount, forecast_amount = _overage(
            meter, meter_terms, terms, used, forecast.units, used_earlier, start, end
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
                forecast_units=forecast.units,
                forecast_amount_minor=forecast_amount,
                forecast_method=forecast.method,
                forecast_note=forecast.note,
                forecast_ceiling=ceiling[0] if ceiling else None,
                forecast_pace_from=start + FORECAST_MIN_ELAPSED,
                excluded=counts.get((meter, ChargeStatus.EXCLUDED), 0),
                held=counts.get((meter, ChargeStatus.HELD), 0),
            )
        )
    return PeriodUsage(start=start, end=end, currency=account.currency, meters=meters)


@dataclass(frozen=True)
class Forecast:
    units: int
    method: str
    note: str


def _forecast(
    counted: int,
    last_period: int,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    is_paused: bool,
    ceiling: tuple[int, str] | None,
) -> Forecast:
    """The units the period will end with (integer maths, rounded half up)."""
    total = int((end - start).total_seconds())
    elapsed = min(max(int((now - start).total_seconds()), 0), total)
    if elapsed >= total:
        return Forecast(counted, "final", "The period is over: the units counted.")
    if is_paused:
        return Forecast(counted, "paused", "Paused until the period ends: no more units count.")
    if elapsed >= FORECAST_MIN_ELAPSED.total_seconds():
        units = (counted * total + elapsed // 2) // elapsed
        days, all_days = elapsed // 86400, total // 86400
        forecast = Forecast(units, "pace", f"At this pace: {days} of {all_days} days gone.")
    elif last_period > counted:
        forecast = Forecast(
            last_period, "last_period", "Too early for a pace: the last period's count."
        )
    else:
        forecast = Forecast(
            counted, "so_far", "Too early for a pace and no more in the last period: so far."
        )
    if ceiling is not None and forecast.units > ceiling[0]:
        return Forecast(ceiling[0], "capped", f"{forecast.note} Capped at {ceiling[1]}")
    return forecast


def _ceiling(meter, meter_terms, subscription, terms, used_earlier) -> tuple[int, str] | None:
    """The most units the period can count: a hard cap (C2), or the AI limits (Z9)."""
    if meter_terms is not None and meter_terms.policy == "hard_cap":
        return meter_terms.included, f"the limit of {meter_terms.included:,} (C2)."
    if meter != t.AUTOMATED_RESOLUTIONS:
        return None
    limits = []
    if subscription.ai_monthly_limit is not None:
        monthly = subscription.ai_monthly_limit
        limits.append((monthly, f"the account's monthly limit of {monthly:,} (Z9)."))
    if terms.edition is not None and terms.edition.at_limit == "pause":
        left = max(pricing.resolution_limit(edition=terms.edition) - used_earlier, 0)
        limits.append((left, f"the {left:,} left of the term's limit (Z9)."))
    return min(limits) if limits else None


def _overage(
    meter, meter_terms, terms, used, forecast, used_earlier, start, end
) -> tuple[int, int, int]:
    if meter_terms is None:
        return 0, 0, 0
    if meter == t.AUTOMATED_RESOLUTIONS:
        # Overage on resolutions is against the allocation term, billed monthly (Z9).
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


def _resolutions_earlier_in_term(
    account: Account, subscription: Subscription, start: datetime
) -> int:
    """Resolutions of the allocation term's months before `start` (a monthly edition's term
    is the month itself: none)."""
    term_start, _ = allocation_term(subscription, start)
    return units_between(
        account=account, meter=t.AUTOMATED_RESOLUTIONS, start=term_start, end=start
    )


def units_between(*, account: Account, meter: str, start: datetime, end: datetime) -> int:
    """Final units of one meter in the usage periods starting in [start, end)."""
    return (
        UsageDay.objects.filter(
            account=account,
            meter=meter,
            status=ChargeStatus.FINAL,
            period_start__gte=start,
            period_start__lt=end,
        ).aggregate(n=Sum("units"))["n"]
        or 0
    )


def ticket_billing(*, account: Account, ticket: str) -> list[Charge]:
    """The verdicts on one ticket, every meter, with the rule ids that decided them."""
    return list(
        Charge.objects.filter(
            account=account, subject_kind=SubjectKind.TICKET, subject=ticket
        ).order_by("meter", "unit")
    )


def entitlements(*, account: Account, subscription: Subscription | None) -> dict[str, dict]:
    """What the account may use now: active unless paused (C2, Z9) or suspended (F4)."""
    states: dict[str, dict[str, object]] = {
        feature: {"state": "active", "until": None, "reason": ""} for feature in Feature.values
    }
    for row in Entitlement.objects.filter(account=account):
        states[row.feature] = {"state": row.state, "until": row.until, "reason": row.reason}
    if subscription is not None and subscription.status == Subscription.Status.SUSPENDED:
        states[Feature.HELPDESK] = {
            "state": "suspended",
            "until": None,
            "reason": "Unpaid invoice.",
        }
    return states


def loop_hold_group(*, account_id: int, hold_id: int) -> list[UsageHold]:
    """The account's active loop holds that share this hold's reason: one burst, which the
    pages and the console release or exclude together. Empty when the hold is another
    account's, not a loop's, or decided already."""
    hold = UsageHold.objects.filter(
        pk=hold_id,
        account_id=account_id,
        kind=UsageHold.Kind.LOOP,
        released_at__isnull=True,
        excluded_at__isnull=True,
    ).first()
    if hold is None:
        return []
    return list(
        UsageHold.objects.filter(
            account_id=account_id,
            kind=UsageHold.Kind.LOOP,
            reason=hold.reason,
            released_at__isnull=True,
            excluded_at__isnull=True,
        ).order_by("held_at", "pk")
    )
