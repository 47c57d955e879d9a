"""Read paths of the Billing & Usage page. Every function takes the account and filters on it:
none can return another account's rows.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Prefetch

from accounts.models import Account
from accounts.selectors import account_integration_count
from metering import selectors as metering
from metering.models import ChargeStatus
from plans import pricing
from plans.models import AddOn, AddOnTier, Meter, Plan, ScheduledChange, Subscription
from plans.money import format_period
from plans.selectors import catalog_addons, catalog_plans, subscription_current
from plans.terms import (
    MissingTerms,
    TermsBook,
    meter_terms_by_meter,
    subscription_addons,
    subscription_terms,
)

from .. import statement
from ..models import Dunning, Invoice, InvoiceKind, InvoiceStatus, PaymentAttempt, UsageClose
from ..payments import confirmation_path, default_payment_method
from ..statement import CreditHistory, InvoiceFigures
from . import charts
from .rules_text import rule_words

S = InvoiceStatus
UNPAID = (S.OPEN, S.PAST_DUE, S.REQUIRES_CONFIRMATION)
FEE_KINDS = {"plan_fee", "addon_fee", "edition_fee", "commitment"}
USAGE_KINDS = {"overage", "late_usage"}
PICKER_PERIODS = 24  # closed periods the Usage tab offers to look back at
ADDON_OF_METER = {
    Meter.AUTOMATED_INTERACTIONS: "Automate",
    Meter.VOICE_TICKETS: "Voice",
    Meter.SMS_TICKETS: "SMS",
    Meter.CONVERT_CLICKS: "Convert",
}


def last_day(end: datetime) -> date:
    """The last day a half-open period [start, end) covers."""
    return (end - timedelta(microseconds=1)).date()


# --- scheduled changes ----------------------------------------------------------------------


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
    """Each change waiting for the cycle's end (P7), described in words: "Pro → Basic"."""
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
            after = dict(Subscription._meta.get_field("interval").choices)[change.interval]
            parts.append(f"billing {before} → {after}")
        if change.addon_id:
            current = subscription.addons.filter(addon=change.addon).select_related("tier").first()
            before = current.tier.name if current else "none"
            after = change.addon_tier.name if change.addon_tier_id else "removed"
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
    return result


@dataclass(frozen=True)
class Ending:
    """What cancelling at the end of the cycle does, for the warning label, or the scheduled
    end when there is one already."""

    ends_on: date  # the cycle's last day: everything works until its end
    last_period: tuple[datetime, datetime]  # the usage period the last invoice closes
    invoice_on: date  # when that invoice is issued (the cycle's end boundary)
    scheduled_id: int | None  # the scheduled cancellation, when already asked


def subscription_ending(*, subscription: Subscription) -> Ending:
    from plans import periods

    end = subscription.current_period_end
    scheduled = next(
        (
            c.pk
            for c in subscription.scheduled_changes.all()
            if c.cancel and c.status == ScheduledChange.Status.SCHEDULED
        ),
        None,
    )
    return Ending(
        ends_on=last_day(end),
        last_period=periods.usage_period_containing(
            subscription.billing_anchor, end - timedelta(microseconds=1)
        ),
        invoice_on=end.date(),
        scheduled_id=scheduled,
    )


# --- overview -------------------------------------------------------------------------------


@dataclass
class Overview:
    subscription: Subscription | None
    plan_name: str = ""
    interval_label: str = ""
    fees_minor: int = 0  # what the plan and add-ons cost per interval
    fee_lines: list[tuple[str, int]] = field(default_factory=list)
    days_left: int = 0
    renewal_on: date | None = None
    renewal_minor: int = 0  # next cycle's fees, scheduled changes applied
    due_minor: int = 0  # the statement's amount owed
    unpaid: list[Invoice] = field(default_factory=list)
    owed: list[tuple[Invoice, InvoiceFigures]] = field(default_factory=list)  # oldest first
    past_due: list[Invoice] = field(default_factory=list)
    held: list[tuple[Invoice, str, InvoiceFigures]] = field(default_factory=list)
    credit_balance_minor: int = 0
    credits: list[CreditHistory] = field(default_factory=list)
    suspend_at: datetime | None = None
    card: object = None
    currency: str = "USD"
    ended: Subscription | None = None  # the last subscription, when it ended and none is live
    ended_on: date | None = None


def _fees(terms: pricing.SubscriptionTerms) -> list[tuple[str, int]]:
    lines = []
    if terms.plan is not None:
        lines.append((f"{terms.plan.name} plan", terms.plan.fee_minor))
    for addon in terms.addons:
        lines.append((f"{addon.name} add-on", addon.fee_minor))
    if terms.edition is not None:
        lines.append((f"{terms.edition.name} edition", terms.edition.fee_minor))
    return lines


def _after_scheduled(
    subscription: Subscription, book: TermsBook, addons
) -> pricing.SubscriptionTerms:
    """The terms the next cycle starts on: the current ones with scheduled changes applied."""
    plan = interval = None
    tiers: dict[AddOn, AddOnTier | None] = {}
    for change in subscription.scheduled_changes.all():
        if change.status != ScheduledChange.Status.SCHEDULED:
            continue
        plan = change.plan or plan
        interval = change.interval or interval
        if change.addon_id:
            tiers[change.addon] = change.addon_tier
    return book.subscription_terms(subscription, addons, plan=plan, interval=interval, tiers=tiers)


def overview(
    *, account: Account, now: datetime, subscription: Subscription | None = None
) -> Overview:
    subscription = subscription or subscription_current(account=account)
    result = Overview(subscription=subscription, currency=account.currency)
    result.card = default_payment_method(account.pk)
    unpaid = list(
        Invoice.objects.filter(account=account, kind=InvoiceKind.INVOICE, status__in=UNPAID)
        .select_related("dunning")
        .order_by("issued_at", "pk")
    )
    # What is owed and the account's credit: the statement of account, as on every surface.
    account_statement = statement.account_statement(account=account)
    figures = account_statement.by_id
    result.unpaid = unpaid
    result.owed = [(invoice, figures[invoice.pk]) for invoice in unpaid]
    result.due_minor = account_statement.amount_owed_minor
    result.credit_balance_minor = account_statement.credit_balance_minor
    result.credits = account_statement.credits
    result.past_due = [i for i in unpaid if i.status == S.PAST_DUE]
    for invoice in unpaid:
        dunning = getattr(invoice, "dunning", None)
        if dunning is None:
            continue
        if dunning.held_reason:
            result.held.append((invoice, dunning.held_reason, figures[invoice.pk]))
        if dunning.suspend_at and (
            result.suspend_at is None or dunning.suspend_at < result.suspend_at
        ):
            result.suspend_at = dunning.suspend_at
    if subscription is None:
        result.ended = subscription_ended(account=account)
        result.ended_on = last_day(result.ended.ended_at) if result.ended else None
        return result
    book = TermsBook([account.pk])
    addons = subscription_addons(subscription)
    terms = book.subscription_terms(subscription, addons)
    result.plan_name = str(subscription.offer)
    result.interval_label = subscription.get_interval_display()
    result.fee_lines = _fees(terms)
    result.fees_minor = sum(amount for _, amount in result.fee_lines)
    end = subscription.current_period_end
    result.days_left = max((end - now + timedelta(seconds=86399)).days, 0)
    result.renewal_on = end.date()
    result.renewal_minor = sum(
        amount for _, amount in _fees(_after_scheduled(subscription, book, addons))
    )
    return result


# --- usage ----------------------------------------------------------------------------------


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


def _policy_words(terms: pricing.MeterTerms | None, currency: str) -> str:
    from plans.money import format_money, format_unit_price

    if terms is None:
        return "Not in your plan: counted, not billed."
    if terms.policy == "hard_cap":
        return "No overage: paused at the limit until the period ends (C2)."
    if terms.policy == "per_block":
        return (
            f"Beyond it, {format_money(terms.block_price_minor, currency)} "
            f"per block of {terms.block_size:,} (P2)."
        )
    if terms.unit_price_minor is None:  # "none": AI paused at the limit (Z9)
        return "Beyond it, nothing is billed: the feature pauses at the limit."
    return f"Beyond it, {format_unit_price(terms.unit_price_minor, currency)} each."


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
    terms = subscription_terms(subscription)
    # Late units come from the closes (late_units), not from the summary's recorded_at scan.
    summary = metering.usage_summary(
        account=account,
        subscription=subscription,
        start=start,
        end=end,
        now=now,
        with_late=False,
        terms=terms,
    )
    by_meter = meter_terms_by_meter(terms)
    labels = dict(Meter.choices)
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
    for m in summary.meters:
        if m.included is None and not (m.used or m.pending or m.not_billed):
            continue  # neither paid for nor used: nothing to show
        row = MeterRow(
            meter=m.meter,
            label=labels.get(m.meter, m.meter).capitalize()
            if m.meter != Meter.SMS_TICKETS
            else "SMS tickets",
            addon=ADDON_OF_METER.get(m.meter, ""),
            used=m.used,
            pending=m.pending,
            not_billed=m.not_billed,
            late=late.get(m.meter, 0),
            included=m.included,
            overage_units=m.overage_units,
            overage_minor=m.overage_amount_minor,
            forecast_units=m.forecast_units,
            forecast_minor=m.forecast_amount_minor,
            policy=_policy_words(by_meter.get(m.meter), account.currency),
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
        if subscription.plan_id
        else None,
        entitlements=metering.entitlements(account=account, subscription=subscription),
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


@dataclass(frozen=True)
class Verdict:
    meter: str
    counted: bool
    status: str
    billable_at: datetime | None
    pending_until: datetime | None
    period_start: datetime | None
    rules: list[tuple[str, str]]  # (id, words)


def ticket_explanation(*, account: Account, ticket: str) -> list[Verdict]:
    """Why one ticket was (or was not) billed, per meter, with each rule in words."""
    labels = dict(Meter.choices)
    return [
        Verdict(
            meter=labels.get(charge.meter, charge.meter),
            counted=charge.status in (ChargeStatus.FINAL, ChargeStatus.PENDING),
            status=charge.get_status_display(),
            billable_at=charge.billable_at,
            pending_until=charge.pending_until,
            period_start=charge.period_start,
            rules=[(rule, rule_words(rule)) for rule in charge.rules],
        )
        for charge in metering.ticket_billing(account=account, ticket=ticket)
    ]


# --- invoices -------------------------------------------------------------------------------


@dataclass
class InvoiceRow:
    invoice: Invoice
    usage_period: tuple[datetime, datetime] | None
    fee_period: tuple[datetime, datetime] | None
    failure_reason: str
    confirm_url: str
    can_retry: bool
    held_reason: str
    figures: InvoiceFigures | None = None  # total, credited, paid, amount due (the statement)


def _span(lines, kinds) -> tuple[datetime, datetime] | None:
    chosen = [line for line in lines if line.kind in kinds]
    if not chosen:
        return None
    return min(line.period_start for line in chosen), max(line.period_end for line in chosen)


def invoice_rows(
    *, account: Account, account_statement: statement.AccountStatement | None = None
) -> list[InvoiceRow]:
    """Every invoice and credit note of the account, newest first, with what the merchant can
    do about each: confirm (F2), retry where a retry can succeed (F3)."""
    has_card = default_payment_method(account.pk) is not None
    account_statement = account_statement or statement.account_statement(account=account)
    figures = account_statement.by_id
    invoices = (
        Invoice.objects.filter(account=account)
        .exclude(status=S.DRAFT)
        .select_related("credited_invoice", "dunning")
        .prefetch_related("lines", Prefetch("attempts", queryset=PaymentAttempt.objects.all()))
        .order_by("-issued_at", "-pk")
    )
    rows = []
    for invoice in invoices:
        lines = list(invoice.lines.all())
        attempts = sorted(invoice.attempts.all(), key=lambda a: a.number)
        last = attempts[-1] if attempts else None
        dunning = getattr(invoice, "dunning", None)
        held = dunning.held_reason if dunning else ""
        waiting = (
            invoice.status == S.REQUIRES_CONFIRMATION
            and last is not None
            and last.status == PaymentAttempt.Status.REQUIRES_ACTION
        )
        rows.append(
            InvoiceRow(
                invoice=invoice,
                usage_period=_span(lines, USAGE_KINDS),
                fee_period=_span(lines, FEE_KINDS | {"proration", "credit"}),
                failure_reason=last.failure_reason if last and invoice.status == S.PAST_DUE else "",
                confirm_url=confirmation_path(last) if waiting else "",
                # A retry can succeed only with a card, on an invoice not held by the cap (P8).
                can_retry=invoice.kind == InvoiceKind.INVOICE
                and invoice.status in (S.PAST_DUE, S.OPEN)
                and has_card
                and not held,
                held_reason=held,
                figures=figures.get(invoice.pk),
            )
        )
    return rows


def invoice_for_account(*, account: Account, invoice_id: int) -> Invoice | None:
    return (
        Invoice.objects.filter(account=account, pk=invoice_id)
        .exclude(status=S.DRAFT)
        .select_related("account", "credited_invoice")
        .first()
    )


def chargeable_invoices(*, account: Account) -> list[Invoice]:
    """What "Pay all outstanding" charges: unpaid invoices not held by the cap, oldest first.
    Those waiting for the customer's confirmation are confirmed on the secure page instead."""
    return list(
        Invoice.objects.filter(
            account=account, kind=InvoiceKind.INVOICE, status__in=[S.PAST_DUE, S.OPEN]
        )
        .exclude(dunning__held_reason__gt="")
        .order_by("issued_at", "pk")
    )


def outstanding_minor(*, account: Account) -> int:
    """What the account owes: the statement's amount owed (credit notes and charges off)."""
    return statement.account_statement(account=account).amount_owed_minor


def account_credit(*, account: Account) -> statement.AccountStatement:
    """The invoices tab's figures: amount owed, credit balance and each credit's history."""
    return statement.account_statement(account=account)


# --- plans and add-ons ----------------------------------------------------------------------


@dataclass
class PlanOption:
    plan: Plan
    fee_minor: int  # per the subscription's interval
    monthly_minor: int
    annual_minor: int
    included: int
    policy: str
    this_period_minor: int  # fee + helpdesk overage at this period's use
    is_current: bool
    direction: str  # "upgrade" | "downgrade" | "current"


def plan_options(*, account: Account, subscription: Subscription) -> list[PlanOption]:
    """Each public plan with what this period would have cost on it (fee + overage at this
    period's helpdesk use), so the merchant compares like with like."""
    current = subscription_terms(subscription)
    used = metering.period_units(
        account=account, starts=[subscription.usage_period_start], meter=Meter.HELPDESK_TICKETS
    ).get((subscription.usage_period_start, Meter.HELPDESK_TICKETS, ChargeStatus.FINAL), 0)
    book = TermsBook([account.pk])
    addons = subscription_addons(subscription)
    options = []
    for plan in catalog_plans().filter(is_custom=False):
        try:
            monthly = book.subscription_terms(subscription, addons, plan=plan, interval="month")
            annual = book.subscription_terms(subscription, addons, plan=plan, interval="year")
        except MissingTerms:
            continue  # not sold in this currency
        terms = annual if subscription.interval == "year" else monthly
        helpdesk = terms.plan.helpdesk
        overage = pricing.overage_amount_minor(terms=helpdesk, used=used)
        monthly_fee = monthly.plan.fee_minor
        is_current = plan.pk == subscription.plan_id
        direction = (
            "current" if is_current else pricing.classify_change(current=current, requested=terms)
        )
        options.append(
            PlanOption(
                plan=plan,
                fee_minor=terms.plan.fee_minor,
                monthly_minor=monthly_fee,
                annual_minor=annual.plan.fee_minor,
                included=helpdesk.included,
                policy=_policy_words(helpdesk, account.currency),
                this_period_minor=monthly_fee + overage,
                is_current=is_current,
                direction=direction,
            )
        )
    return options


@dataclass
class StartOption:
    """A public plan a merchant whose subscription ended may start again on."""

    plan: Plan
    monthly_minor: int
    annual_minor: int
    included: int
    policy: str


def start_options(*, account: Account) -> list[StartOption]:
    book = TermsBook([account.pk])
    options = []
    for plan in catalog_plans().filter(is_custom=False):
        draft = Subscription(account=account, plan=plan, interval="month")  # priced, not saved
        try:
            monthly = book.subscription_terms(draft, [])
            annual = book.subscription_terms(draft, [], interval="year")
        except MissingTerms:
            continue  # not sold in this currency
        options.append(
            StartOption(
                plan=plan,
                monthly_minor=monthly.plan.fee_minor,
                annual_minor=annual.plan.fee_minor,
                included=monthly.plan.helpdesk.included,
                policy=_policy_words(monthly.plan.helpdesk, account.currency),
            )
        )
    return options


def subscription_ended(*, account: Account) -> Subscription | None:
    """The account's last subscription, if it ended (None while one is live or none ever was)."""
    last = (
        Subscription.objects.filter(account=account)
        .select_related("plan", "edition")
        .order_by("-started_at", "-pk")
        .first()
    )
    return last if last is not None and last.ended_at is not None else None


@dataclass
class AddOnOption:
    addon: AddOn
    current_tier: AddOnTier | None
    tiers: list[tuple[AddOnTier, int, int]]  # tier, fee per interval, included per month
    usage: MeterRow | None = None


def addon_options(*, account: Account, subscription: Subscription) -> list[AddOnOption]:
    current = {item.addon_id: item.tier for item in subscription.addons.all()}
    book = TermsBook([account.pk])
    chosen = subscription_addons(subscription)
    options = []
    for addon in catalog_addons():
        tiers = []
        for tier in addon.tiers.all():
            try:
                terms = book.subscription_terms(subscription, chosen, tiers={addon: tier})
            except MissingTerms:
                continue
            item = next(a for a in terms.addons if a.addon == addon.code)
            tiers.append((tier, item.fee_minor, item.usage.included))
        options.append(AddOnOption(addon=addon, current_tier=current.get(addon.pk), tiers=tiers))
    return options


def held_reason(*, account: Account) -> str:
    dunning = (
        Dunning.objects.filter(invoice__account=account, invoice__status__in=UNPAID)
        .exclude(held_reason="")
        .first()
    )
    return dunning.held_reason if dunning else ""
