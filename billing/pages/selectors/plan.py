"""The Plan tab: each plan priced at this period's use, starting again after an end, and what
cancelling at the cycle's end does."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from accounts.models import Account
from metering import selectors as metering
from metering.models import ChargeStatus
from plans import pricing
from plans.models import Meter, Plan, ScheduledChange, Subscription
from plans.selectors import catalog_plans, subscription_last_ended
from plans.terms import MissingTerms, TermsBook, subscription_addons, subscription_terms

from .common import _policy_words, last_day


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
            subscription.billing_anchor, end - timedelta(microseconds=1), subscription.interval
        ),
        invoice_on=end.date(),
        scheduled_id=scheduled,
    )


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
        # Priced with plan=: both intervals' terms are a plan's.
        assert terms.plan is not None and monthly.plan is not None and annual.plan is not None
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
        assert monthly.plan is not None and annual.plan is not None  # the draft is to a plan
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
    return subscription_last_ended(account=account)
