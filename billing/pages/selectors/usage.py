"""The Usage tab: each meter's period so far, forecast, late units, charts and the period
picker; automated resolutions against the allocation (Z8, Z9)."""

from dataclasses import dataclass, field
from datetime import date, datetime

from accounts.models import Account
from accounts.selectors import account_integration_count
from metering import selectors as metering
from metering.models import ChargeStatus, Feature
from plans import meters, pricing
from plans.models import AddOn, Meter, Subscription
from plans.periods import format_period
from plans.selectors import subscription_current
from plans.terms import meter_terms_by_meter, subscription_terms

from ...models import UsageClose
from .. import charts
from .common import _policy_words, last_day

PICKER_PERIODS = 24  # closed periods the Usage tab offers to look back at
# The feature a meter's limit pauses (metering.limits): Convert's campaigns, the AI agents.
PAUSES: dict[str, str] = {
    Meter.CONVERT_CLICKS: Feature.CONVERT_CAMPAIGNS,
    Meter.AUTOMATED_RESOLUTIONS: Feature.AI_AGENTS,
}


@dataclass
class MeterRow:
    meter: str
    label: str
    addon: str
    used: int
    pending: int
    not_billed: int
    late: int
    included: int | None
    overage_units: int
    overage_minor: int
    forecast_units: int
    forecast_minor: int
    policy: str
    excluded: int = 0  # contested and accepted: kept, never billed (billing.ticket_disputes)
    held: int = 0  # held for review by the spike guard: not billed, not forecast, until released
    percent: int = 0  # bar width, 0–100
    chart: charts.Chart | None = None

    @property
    def over(self) -> bool:
        return self.included is not None and self.used > self.included


@dataclass
class Usage:
    subscription: Subscription
    start: datetime
    end: datetime
    last_day: date
    elapsed_days: int
    total_days: int
    currency: str
    meters: list[MeterRow]
    integrations: int
    integrations_included: int | None
    entitlements: dict
    history: list[tuple[str, dict[str, int]]]  # (period label, units per meter), oldest first
    edition: object = None
    resolutions: "Resolutions | None" = None
    # The period picker: ("YYYY-MM", label) newest first, and the one shown.
    periods: list[tuple[str, str]] = field(default_factory=list)
    selected: str = ""
    is_over: bool = False  # the period shown has ended: no forecast
    ended_on: date | None = None  # the subscription shown ended (its last day)


@dataclass(frozen=True)
class Resolutions:
    """Automated resolutions against the edition's allocation (Z8, Z9)."""

    allocation: int  # granted for the allocation term
    commitment: int  # pre-purchased on top
    limit: int  # allocation + commitment
    used_in_term: int  # final resolutions of the term so far, this month included
    year_start: datetime
    year_end: datetime
    overage_unit_minor: object
    commitment_unit_minor: object
    at_limit: str
    monthly_limit: int | None
    full_agents: int
    per_agent_month: int

    @property
    def percent(self) -> int:
        return min(100, self.used_in_term * 100 // self.limit) if self.limit else 100

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used_in_term, 0)


def _resolutions(account, subscription, edition, start, used_this_month) -> Resolutions:
    from plans import periods

    # The allocation is granted per term: the year, or the month on a monthly subscription (Z8).
    year_start, year_end = periods.period_containing(
        subscription.billing_anchor, subscription.interval, start
    )
    earlier = metering.units_between(
        account=account, meter=Meter.AUTOMATED_RESOLUTIONS, start=year_start, end=start
    )
    return Resolutions(
        allocation=pricing.resolution_allocation(edition=edition),
        commitment=edition.commitment_units,
        limit=pricing.resolution_limit(edition=edition),
        used_in_term=earlier + used_this_month,
        year_start=year_start,
        year_end=year_end,
        overage_unit_minor=edition.overage_unit_minor,
        commitment_unit_minor=edition.commitment_unit_minor,
        at_limit=subscription.ai_at_limit,
        monthly_limit=subscription.ai_monthly_limit,
        full_agents=edition.full_agents,
        per_agent_month=edition.resolutions_per_agent_month,
    )


def daily_counts(*, account: Account, start: datetime) -> dict[str, dict[date, int]]:
    """Units counted (final and pending) per meter and UTC day in the usage period starting at
    `start`, from metering's per-day counters."""
    return metering.daily_units(
        account=account, start=start, statuses=(ChargeStatus.FINAL, ChargeStatus.PENDING)
    )


def usage(
    *,
    account: Account,
    now: datetime,
    subscription: Subscription | None = None,
    month: str | None = None,
) -> Usage | None:
    """The Usage tab: the period under way, or the one starting in `month` ("YYYY-MM", of
    whichever subscription was in force then). After the end, the ended subscription's last
    period, and its past periods stay readable (F6). None: never a subscription."""
    subscription = subscription or subscription_current(account=account)
    under_way = None
    if subscription is not None:
        under_way = subscription.usage_period_start, subscription.usage_period_end
        if now >= under_way[1]:  # the period ended and is not closed yet: the one under way
            under_way = metering.usage_period(subscription=subscription, month=None, now=now)
    if month is None and under_way is not None:
        start, end = under_way
    else:
        found = metering.usage_period_of_account(account=account, month=month, now=now)
        if found is None:
            return None
        subscription, start, end = found
    assert subscription is not None  # the one under way, or the one the month found
    terms = subscription_terms(subscription)
    # Late units come from the closes (late_units), not from the summary's recorded_at scan.
    summary = metering.usage_summary(
        account=account,
        subscription=subscription,
        start=start,
        end=end,
        now=now,
        terms=terms,
    )
    by_meter = meter_terms_by_meter(terms)
    addon_names = dict(AddOn.objects.values_list("meter", "name"))  # the catalog's names
    days = charts.period_days(start.date(), last_day(end))
    daily = daily_counts(account=account, start=start)
    today = min(now, end).date()
    rows = []
    # The closed periods the picker offers, newest first (of every subscription the account
    # had); the first five make the history table, and the newest three give the late units,
    # which only the default view shows (billed on the open period's invoice).
    closes = list(
        UsageClose.objects.filter(subscription__account=account)
        .order_by("-period_start")
        .values_list("period_start", "period_end", "billed_units")[:PICKER_PERIODS]
    )
    late: dict[str, int] = {}
    if month is None:
        late = late_units(account=account, closes=[(s, units) for s, _, units in closes[:3]])
    picker = [_option(s, e) for s, e, _ in closes]
    # The period under way first, then one picked that the closes do not list.
    for period in ((start, end), under_way):
        if period is not None and (option := _option(*period)) not in picker:
            picker.insert(0, option)
    entitlements = metering.entitlements(account=account, subscription=subscription)
    for m in summary.meters:
        if m.included is None and not (m.used or m.pending or m.not_billed or m.excluded or m.held):
            continue  # neither paid for nor used: nothing to show
        row = MeterRow(
            meter=m.meter,
            label=meters.meter_heading(m.meter),
            addon=addon_names.get(m.meter, ""),
            used=m.used,
            pending=m.pending,
            not_billed=m.not_billed,
            excluded=m.excluded,
            held=m.held,
            late=late.get(m.meter, 0),
            included=m.included,
            overage_units=m.overage_units,
            overage_minor=m.overage_amount_minor,
            forecast_units=m.forecast_units,
            forecast_minor=m.forecast_amount_minor,
            policy=_policy_words(
                by_meter.get(m.meter),
                account.currency,
                paused=entitlements.get(PAUSES.get(m.meter, ""), {}).get("state") == "paused",
            ),
        )
        if m.included:
            row.percent = min(100, m.used * 100 // m.included)
        elif m.used:
            row.percent = 100
        row.chart = charts.cumulative_chart(
            days=days,
            counts=daily.get(m.meter, {}),
            today=today,
            included=m.included,
            forecast=m.forecast_units,
        )
        rows.append(row)
    # The other periods (the one shown is the table's last column, as counted now).
    history = [(format_period(s, e), units) for s, e, units in reversed(closes[:5]) if s != start]
    elapsed = max(0, min((now - start).total_seconds(), (end - start).total_seconds()))
    resolutions = None
    if terms.edition is not None:
        used = next(m.used for m in summary.meters if m.meter == Meter.AUTOMATED_RESOLUTIONS)
        resolutions = _resolutions(account, subscription, terms.edition, start, used)
    return Usage(
        subscription=subscription,
        start=start,
        end=end,
        last_day=last_day(end),
        elapsed_days=int(elapsed // 86400),
        total_days=len(days),
        currency=account.currency,
        meters=rows,
        integrations=account_integration_count(account=account),
        integrations_included=subscription.plan.included_integrations
        if subscription.plan
        else None,
        entitlements=entitlements,
        history=history,
        edition=terms.edition,
        resolutions=resolutions,
        periods=picker,
        selected=_option(start, end)[0],
        is_over=now >= end,
        ended_on=last_day(subscription.ended_at) if subscription.ended_at else None,
    )


def _option(start: datetime, end: datetime) -> tuple[str, str]:
    """A period in the Usage tab's picker: the month it starts in (what `?period=` takes)."""
    return f"{start:%Y-%m}", format_period(start, end)


def late_units(
    *, account: Account, closes: list[tuple[datetime, dict]] | None = None
) -> dict[str, int]:
    """F6: units of already-invoiced periods that became final since their invoice, per
    meter: what the next invoice carries as late usage. `closes`: the account's newest
    (period start, billed units), when the caller has read them already."""
    # The last three closes: late events come within days of a close, and reading every
    # closed period's units would cost the page a scan of the account's whole history.
    if closes is None:
        closes = list(
            UsageClose.objects.filter(subscription__account=account)
            .order_by("-period_start")
            .values_list("period_start", "billed_units")[:3]
        )
    counted = metering.period_units(account=account, starts=[start for start, _ in closes])
    billed = dict(closes)
    late: dict[str, int] = {}
    for (start, meter, status), units in counted.items():
        if status != ChargeStatus.FINAL:
            continue
        extra = units - billed[start].get(meter, 0)
        if extra > 0:
            late[meter] = late.get(meter, 0) + extra
    return late
