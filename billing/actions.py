"""The one place the billing stages are composed for what people trigger: the merchant's page,
the partner API and the operator console call these, never the stages themselves.

`run.py` composes what the clock triggers; this module composes what a person asks for. Each
action is one decision: it checks what a person may not do (no card to pay with), makes the
change in the stage that owns it (each its own transaction), then hands what became payable to
the one collection path. A charge a person asked for is made now, so they see its outcome; a
partner's is queued, so the API answers at once (`collect="now"` or `"soon"`)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.db import transaction
from django.utils import timezone

from accounts.errors import DomainError
from accounts.models import Account
from accounts.services import Acceptor
from audit.services import audit_record
from metering.limits import apply_limits
from plans.models import Subscription
from plans.money import format_money
from plans.services import subscription_ai_limits_set

from . import (
    changes,
    gateway,
    invoicing,
    payments,
    refunds,
    restart,
    selectors,
    shopify_billing,
    statement,
    tasks,
)
from .models import (
    Dunning,
    Invoice,
    InvoiceStatus,
    PaymentAttempt,
    PaymentMethod,
    ShopifySubscription,
)

Collect = Literal["now", "soon"]


# --- paying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    """What a charge a person asked for came to, in words for that person."""

    invoice: Invoice
    outcome: str  # paid | confirm | processing | failed | not_charged
    message: str
    attempt: PaymentAttempt | None = None
    confirm_path: str = ""  # where the customer confirms with their bank (F2)

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.confirm_path)


class NoCardOnShopify(payments.NoPaymentMethod):
    """A card action on an account that pays through Shopify."""

    code = "pays_through_shopify"


def refuse_card_on_shopify(account: Account, *, what: str) -> None:
    """Card actions make no sense on the Shopify channel: Shopify bills the merchant."""
    if account.pays_through_shopify:
        raise NoCardOnShopify(
            f"This account pays through Shopify: there is no card to {what}. Shopify bills "
            "the fees and usage; approve subscriptions and higher limits in Shopify."
        )


@dataclass(frozen=True)
class ShopifyApproval:
    """A change or a start on the Shopify channel: nothing changed yet; the merchant approves
    it at Shopify's confirmation URL (pages redirect there, the API returns it)."""

    shopify_subscription: ShopifySubscription

    @property
    def confirmation_url(self) -> str:
        return self.shopify_subscription.confirmation_url


def card_first(*, account: Account, amount_minor: int, why: str) -> None:
    """Money that is charged at once needs a card to charge it to: say so before anything
    changes (no subscription moved, no invoice issued that the merchant cannot pay)."""
    if amount_minor > 0 and payments.default_payment_method(account.pk) is None:
        raise payments.NoPaymentMethod(f"Add a card first: {why}.")


def invoice_pay(
    *, account: Account, invoice: Invoice, trigger: str = "retry", at: datetime | None = None
) -> Payment:
    """Charge one invoice now through the one collection path ("Retry payment", the API's
    retry, an operator's "Retry now"). What cannot start is a domain error, as the charge path
    raises it: no card (NoPaymentMethod), a payment waiting for the customer
    (AwaitingConfirmation, which names its page), one waiting for Stripe (PaymentInProgress)."""
    attempt = payments.invoice_charge(invoice_id=invoice.pk, trigger=trigger, at=at)
    invoice.refresh_from_db()
    if attempt is None:
        return _not_charged(invoice)
    attempt.refresh_from_db()  # the outcome is written on its own row by the charge path
    # What this attempt asked for: the invoice's amount due (credit notes off), not its total.
    amount = format_money(attempt.amount_minor, attempt.currency)
    number = invoice.number
    if invoice.status == InvoiceStatus.PAID:
        return Payment(invoice, "paid", f"Invoice {number} ({amount}) is paid. Thank you!", attempt)
    if invoice.status == InvoiceStatus.REQUIRES_CONFIRMATION:
        return Payment(
            invoice,
            "confirm",
            f"Your bank asks you to confirm the payment of {amount}.",
            attempt,
            payments.confirmation_path(attempt),
        )
    if attempt.status in payments.IN_FLIGHT:
        return Payment(
            invoice,
            "processing",
            f"The payment of invoice {number} is being processed; this page will show the "
            "outcome shortly.",
            attempt,
        )
    reason = attempt.failure_reason or gateway.reason_for(attempt.failure_code or "")
    return Payment(invoice, "failed", f"The payment of invoice {number} failed: {reason}", attempt)


def _not_charged(invoice: Invoice) -> Payment:
    if invoice.status == InvoiceStatus.PAID:
        return Payment(invoice, "not_charged", f"Invoice {invoice.number} is already paid.")
    held = Dunning.objects.filter(invoice=invoice).values_list("held_reason", flat=True).first()
    return Payment(
        invoice,
        "not_charged",
        f"Invoice {invoice.number} was not charged"
        + (f": {held}" if held else "; nothing to collect now."),
    )


def confirmation_link_resend(*, invoice: Invoice) -> PaymentAttempt:
    """Email the waiting payment's link again (F2): the same payment, rate-limited."""
    return payments.confirmation_link_resend(invoice=invoice)


def outstanding_pay(*, account: Account) -> list[Payment]:
    """ "Pay all outstanding": each unpaid invoice, oldest first, through the one charge path;
    stops at the first one the bank wants the customer to confirm (they are sent there). One
    whose payment is already under way is passed over: its outcome will show."""
    refuse_card_on_shopify(account, what="pay outstanding invoices with")
    due = selectors.chargeable_invoices(account=account)
    if due and payments.default_payment_method(account.pk) is None:
        raise payments.NoPaymentMethod("Add a card first: there is nothing to charge it to.")
    done = []
    for invoice in due:
        try:
            done.append(invoice_pay(account=account, invoice=invoice))
        except payments.PaymentInProgress:
            continue
        if done[-1].needs_confirmation:
            break
    return done


def _collect(
    account: Account, invoice: Invoice | None, collect: Collect, *, trigger: str
) -> Payment | None:
    """Hand a just-issued invoice to collection: now (a person waits for the outcome), or
    soon (a task after the commit; the sweep collects it if the broker is down). `trigger`
    names what issued it ("upgrade", "restart"): its first charge is not a retry."""
    if invoice is None or invoice.status == InvoiceStatus.PAID:
        return None
    if collect == "soon":
        tasks.collect_account_soon(account.pk)
        return None
    return invoice_pay(account=account, invoice=invoice, trigger=trigger)


# --- crediting and refunding -----------------------------------------------------------------


def invoice_credit(
    *,
    invoice: Invoice,
    amount_minor: int,
    reason: str,
    description: str = "",
    refund_minor: int = 0,
    at: datetime | None = None,
) -> Invoice:
    """A partner credits a final invoice (the API's credit notes): a numbered credit note of
    `amount_minor` before tax (invoicing.credit_note_issue); on a paid invoice `refund_minor`,
    tax included, goes back to the card and the rest is account credit. `description` is what
    the customer reads on the note (the reason when empty); `reason` stays on the audit row
    `invoice.credited`, which names the partner's key."""
    if refund_minor:
        refuse_card_on_shopify(invoice.account, what="refund to")
    reason = " ".join(reason.split())
    if not reason:
        raise DomainError("Say why the invoice is credited.", details={"field": "reason"})
    # What Stripe says is refundable is read before the transaction: a call to Stripe never
    # holds the invoice's lock (the refund itself is sent after the commit).
    charges = refunds.invoice_charges_refundable(invoice=invoice) if refund_minor else None
    before = invoice.status
    with transaction.atomic(durable=True):
        note = invoicing.credit_note_issue(
            invoice=invoice,
            amount_minor=amount_minor,
            description=description or reason,
            at=at,
            refund_minor=refund_minor,
            charges=charges,
        )
        invoice.refresh_from_db()
        after: dict[str, object] = {
            "status": invoice.status,
            "credit_note": note.number,
            "amount": amount_minor,
            "description": note.description,
        }
        if refund_minor:
            after["refund_to_card"] = refund_minor
        audit_record(
            action="invoice.credited",
            obj=invoice,
            before=before,
            after=after,
            reason=reason[:1000],
            at=note.issued_at,
        )
    # The refunds were sent when the transaction committed (billing.refunds): the note is
    # read again with their outcome.
    note.refresh_from_db()
    return note


# --- the subscription -----------------------------------------------------------------------


@dataclass(frozen=True)
class Changed:
    result: changes.ChangeResult | None
    payment: Payment | None
    shopify: ShopifyApproval | None = None  # the Shopify channel: approve it there first

    @property
    def confirmation_url(self) -> str:
        return self.shopify.confirmation_url if self.shopify else ""


def subscription_change(
    *,
    account: Account,
    request: changes.ChangeRequest,
    collect: Collect,
    card_required: bool,
) -> Changed:
    """Change the plan, interval or add-ons (P6 now, P7 at the cycle's end) and collect the
    prorated invoice of an upgrade. `card_required` is the self-serve rule: a merchant pays an
    upgrade at once, so without a card nothing changes; a partner may bill its accounts
    otherwise (by transfer), so the API issues the invoice and leaves it open. On the Shopify
    channel nothing changes yet: a replacing app subscription waits for the merchant's
    approval (its confirmation_url), then applies (billing.shopify_billing)."""
    if account.pays_through_shopify:
        row = shopify_billing.shopify_change(account=account, request=request)
        return Changed(None, None, ShopifyApproval(row))
    if card_required:
        preview = changes.subscription_change_preview(account=account, request=request)
        if preview.kind == "upgrade":
            card_first(
                account=account,
                amount_minor=preview.charged_now_minor,
                why="an upgrade is paid at once",
            )
    result = changes.subscription_change(account=account, request=request)
    return Changed(result, _collect(account, result.invoice, collect, trigger="upgrade"))


@dataclass(frozen=True)
class Started:
    started: restart.Restart | None
    payment: Payment | None
    shopify: ShopifyApproval | None = None  # the Shopify channel: approve it there first

    @property
    def confirmation_url(self) -> str:
        return self.shopify.confirmation_url if self.shopify else ""


def subscription_start_again(
    *,
    account: Account,
    plan_code: str | None,
    interval: str | None,
    collect: Collect,
    card_required: bool,
) -> Started:
    """Start again after the end (P1: the first cycle paid at once), same card rule as a
    change. On the Shopify channel: an app subscription to approve (30-day cycles only)."""
    if account.pays_through_shopify:
        if interval == "year":
            raise DomainError(
                shopify_billing.ANNUAL_REFUSED,
                code="shopify_no_annual",
                details={"fields": {"interval": [shopify_billing.ANNUAL_REFUSED]}},
            )
        row = shopify_billing.shopify_start_again(account=account, plan_code=plan_code)
        return Started(None, None, ShopifyApproval(row))
    if card_required:
        preview = restart.subscription_restart_preview(
            account=account, plan_code=plan_code, interval=interval
        )
        card_first(
            account=account,
            amount_minor=preview.charged_now_minor,
            why="the first cycle is paid at once",
        )
    started = restart.subscription_restart(account=account, plan_code=plan_code, interval=interval)
    return Started(started, _collect(account, started.invoice, collect, trigger="restart"))


def scheduled_change_cancel(*, account: Account, change_id: int):
    """Undo a scheduled change (a cancellation at the cycle's end among them)."""
    return changes.scheduled_change_cancel(account=account, change_id=change_id)


def subscription_cancel(*, account: Account, reason: str = "", comment: str = ""):
    """Cancel at the end of the cycle: scheduled like a downgrade (P7), with the merchant's
    reason when they gave one."""
    return changes.subscription_cancel_at_period_end(
        account=account, reason=reason, comment=comment
    )


def ai_limits_set(
    *, account: Account, subscription: Subscription, at_limit: str, monthly_limit: int | None
) -> None:
    """Z9: keep or pause at the automated-resolution limit, and the account's own monthly limit,
    re-applied at once to this period's resolutions, in one transaction: the limits and what
    they cap never disagree."""
    with transaction.atomic():
        subscription_ai_limits_set(
            subscription_id=subscription.pk, at_limit=at_limit, monthly_limit=monthly_limit
        )
        apply_limits(
            touched={(account.pk, "automated_resolutions", subscription.usage_period_start)},
            as_of=timezone.now(),
        )


# --- the card -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardSaved:
    method: PaymentMethod
    unpaid: list[Invoice]  # already attempted: offered with "Pay all outstanding"
    unpaid_minor: int


def payment_method_save(
    *, account: Account, stripe_payment_method: str, accepted_by: Acceptor
) -> CardSaved:
    """Save the card (attached at Stripe, made the default) with the terms' acceptance that
    authorises charging it, then collect at once what was waiting for one: invoices never
    attempted and those whose retries stopped for want of a card. What already failed on
    another card is offered, not charged: the merchant may want to choose."""
    refuse_card_on_shopify(account, what="save")
    method = payments.payment_method_set(
        account=account, stripe_payment_method=stripe_payment_method, accepted_by=accepted_by
    )
    tasks.collect_account_soon(account.pk)
    unpaid = [
        i for i in selectors.chargeable_invoices(account=account) if i.status != InvoiceStatus.OPEN
    ]
    figures = statement.invoices_figures(unpaid)
    return CardSaved(method, unpaid, sum(figures[i.pk].amount_due_minor for i in unpaid))
