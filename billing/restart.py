"""Starting again: a new subscription for an account whose last one ended (canceled at the end
of its cycle). It lives in billing because it issues the first invoice at once (P1), which the
caller hands to the one collection path.

What a returning merchant expects: a plan of the public catalog, a new cycle from today, the
first period's fee charged now, and the helpdesk, automation and campaigns switched back on.
What an operator expects: a past-due invoice is paid first (starting again is not a way around
dunning), and only the self-serve plans are open; editions and negotiated plans are set up by
an operator, as at the first sign-up.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, DomainError
from accounts.models import Account
from metering import limits as metering_limits
from outbox import services as outbox
from plans import periods, pricing
from plans import services as plan_services
from plans.models import Plan, Subscription
from plans.money import format_money
from plans.terms import TermsBook

from . import invoicing, shopify_figures, statement
from .changes import plan_for_sale
from .closing import start_invoice_issue
from .models import Invoice, InvoiceKind, InvoiceStatus


@dataclass(frozen=True)
class Restart:
    subscription: Subscription
    invoice: Invoice | None  # the first period's fees; None when they are nothing


@dataclass(frozen=True)
class RestartPreview:
    plan: Plan
    interval: str
    period: pricing.Period  # the first cycle, from now
    fee_minor: int  # the first cycle's fee
    credit_minor: int = 0  # the account's credit the first invoice takes off the fee

    @property
    def charged_now_minor(self) -> int:
        """What is charged at once: the fee less the account's credit (invoicing nets it)."""
        return self.fee_minor - self.credit_minor


def _interval(interval: str | None) -> str:
    if interval not in (periods.MONTH, periods.YEAR):
        raise DomainError("interval is 'month' or 'year'.", details={"field": "interval"})
    return interval


def _refuse_if_live_or_past_due(account: Account) -> None:
    if account.status != Account.Status.ACTIVE:
        raise Conflict(
            f"This account is {account.status} by our team: contact us to start again.",
            code="account_not_active",
            details={"status": account.status},
        )
    if Subscription.objects.filter(account=account, ended_at__isnull=True).exists():
        raise Conflict(
            "This account already has a live subscription: change its plan instead.",
            code="subscription_live",
        )
    past_due = list(
        Invoice.objects.filter(
            account=account, kind=InvoiceKind.INVOICE, status=InvoiceStatus.PAST_DUE
        ).order_by("issued_at", "pk")
    )
    if past_due:
        owed = format_money(sum(invoicing.amount_due(i) for i in past_due), account.currency)
        numbers = [i.number for i in past_due if i.number]  # final invoices: all numbered
        raise Conflict(
            f"Pay what is outstanding first: {owed} is past due ({', '.join(numbers)}).",
            code="outstanding_invoices",
            details={"invoices": numbers},
        )


def subscription_restart_preview(
    *, account: Account, plan_code: str | None, interval: str | None, at: datetime | None = None
) -> RestartPreview:
    """What starting again on this plan costs now, and the cycle it pays for. Refuses what
    subscription_restart would refuse."""
    at = at or timezone.now()
    plan, interval = plan_for_sale(plan_code or ""), _interval(interval)
    _refuse_if_live_or_past_due(account)
    start, end = periods.period_containing(at, interval, at)
    draft = Subscription(account=account, plan=plan, interval=interval)
    terms = TermsBook([account.pk]).subscription_terms(draft, [])
    assert terms.plan is not None  # the draft is to a plan
    fee = terms.plan.fee_minor
    # The first invoice spends the account's open credit (invoicing._apply_credits): the page
    # announces what is charged, not the list price.
    credit = statement.account_statement(account=account).credit_balance_minor
    return RestartPreview(
        plan=plan,
        interval=interval,
        period=pricing.Period(start=start, end=end),
        fee_minor=fee,
        credit_minor=min(max(credit, 0), fee),
    )


def subscription_restart(
    *, account: Account, plan_code: str | None, interval: str | None, at: datetime | None = None
) -> Restart:
    """A new subscription from `at`, with its first invoice issued; the features the end of the
    last one switched off are switched back on. Two requests at once start one subscription:
    the account's row is locked, and the second is refused as live."""
    at = at or timezone.now()
    plan, interval = plan_for_sale(plan_code or ""), _interval(interval)
    with transaction.atomic(durable=True):
        account = Account.objects.select_for_update().get(pk=account.pk)
        _refuse_if_live_or_past_due(account)
        # Its `subscription.started` audit row is written there, as for every subscription.
        created = plan_services.subscription_create(
            account=account, offer=plan, interval=interval, now=at, reason="started again"
        )
        subscription = Subscription.objects.select_related("account", "plan", "edition").get(
            pk=created.pk
        )
        invoice = start_invoice_issue(subscription=subscription, as_of=at)
        metering_limits.entitlements_restore(account_id=account.pk, at=at)
        outbox.subscription_changed_emit(
            subscription,
            effective="now",
            shopify=shopify_figures.webhook_figures(subscription.account_id),
        )
    return Restart(subscription=subscription, invoice=invoice)
