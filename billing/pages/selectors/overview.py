"""The Overview tab: fees, renewal, what is owed and the account's credit."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from accounts.models import Account
from plans import pricing
from plans.models import AddOn, AddOnTier, ScheduledChange, Subscription
from plans.selectors import subscription_current
from plans.terms import TermsBook, subscription_addons

from ... import statement
from ...models import UNPAID, Invoice, InvoiceKind
from ...payments import default_payment_method
from ...statement import CreditHistory, InvoiceFigures
from .common import S, last_day
from .plan import subscription_ended


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
        if change.addon:
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
            # The banner ends the sentence itself: the reason without its full stop.
            reason = dunning.held_reason.rstrip(".")
            result.held.append((invoice, reason, figures[invoice.pk]))
        if dunning.suspend_at and (
            result.suspend_at is None or dunning.suspend_at < result.suspend_at
        ):
            result.suspend_at = dunning.suspend_at
    if subscription is None:
        result.ended = subscription_ended(account=account)
        ended_at = result.ended.ended_at if result.ended else None
        result.ended_on = last_day(ended_at) if ended_at else None
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
