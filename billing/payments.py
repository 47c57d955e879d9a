"""Charging invoices through Stripe, and what follows each outcome (F1–F5).

Every outcome, whatever brought it (the charge itself, a retry, the customer confirming on the
secure page, a webhook, reconciliation), goes through `_apply`, so the states converge: a paid
invoice never moves back, and an attempt's answer is recorded once.
"""

import logging
from datetime import datetime, timedelta

from django.core import signing
from django.core.mail import mail_admins
from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone

from accounts.errors import Conflict, DomainError
from accounts.models import Account
from plans import pricing
from plans.models import Subscription
from plans.services import subscription_transition

from . import emails, gateway
from .models import Dunning, Invoice, InvoiceKind, InvoiceStatus, PaymentAttempt, PaymentMethod
from .services import invoice_transition

logger = logging.getLogger(__name__)

S = InvoiceStatus
A = PaymentAttempt.Status
CHARGEABLE = (S.OPEN, S.PAST_DUE, S.REQUIRES_CONFIRMATION)
# After a failed charge: automatic retries on these days, 8 tries within 2 weeks in all
# (Stripe's recommendation). A hard decline is not retried automatically.
RETRY_AFTER_DAYS = (1, 2, 4, 6, 8, 11, 14)
# A payment waiting for the customer's confirmation: reminders on these days.
REMINDER_AFTER_DAYS = (1, 3, 7)
# Unpaid this long after its first failure or confirmation request: the subscription is
# suspended (F4).
SUSPEND_AFTER = timedelta(days=14)
CONFIRMATION_LINK_MAX_AGE = timedelta(days=30)
# An attempt with no recorded answer after this long is settled by asking Stripe.
IN_FLIGHT_TIMEOUT = timedelta(minutes=5)


# --- payment methods ------------------------------------------------------------------------


def customer_ensure(*, account: Account) -> str:
    if not account.stripe_customer_id:
        customer = gateway.customer_create(
            email=account.billing_email, name=account.name, account_slug=account.slug
        )
        Account.objects.filter(pk=account.pk, stripe_customer_id="").update(
            stripe_customer_id=customer
        )
        account.refresh_from_db(fields=["stripe_customer_id"])
    return account.stripe_customer_id


def payment_method_set(*, account: Account, stripe_payment_method: str) -> PaymentMethod:
    """Attach a card collected by Stripe.js (or a partner's card form) and make it the
    default for charges."""
    customer = customer_ensure(account=account)
    try:
        card = gateway.payment_method_attach(
            customer=customer, payment_method=stripe_payment_method
        )
    except gateway.GatewayError as exc:
        raise DomainError(str(exc), code="payment_method_refused") from exc
    with transaction.atomic():
        PaymentMethod.objects.filter(account=account, is_default=True).update(is_default=False)
        method, _ = PaymentMethod.objects.update_or_create(
            stripe_id=card.stripe_id,
            defaults={
                "account": account,
                "brand": card.brand,
                "last4": card.last4,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "is_default": True,
            },
        )
    return method


def default_payment_method(account_id: int) -> PaymentMethod | None:
    return PaymentMethod.objects.filter(account_id=account_id, is_default=True).first()


# --- charging -------------------------------------------------------------------------------


def invoices_charge(*, invoice_ids: list[int], trigger: str = "automatic") -> int:
    """Charge each invoice whose account has a saved card (F1); others wait, open."""
    # Invoiced customers without a card pay by other means (docs/architecture.md): skipped.
    chargeable = Invoice.objects.filter(
        pk__in=invoice_ids,
        kind=InvoiceKind.INVOICE,
        status__in=CHARGEABLE,
        account__payment_methods__is_default=True,
    ).values_list("pk", flat=True)
    charged = 0
    for invoice_id in chargeable:
        if invoice_charge(invoice_id=invoice_id, trigger=trigger) is not None:
            charged += 1
    return charged


def invoice_charge(
    *, invoice_id: int, trigger: str, at: datetime | None = None
) -> PaymentAttempt | None:
    """Try to collect an invoice now; None when there is nothing to collect.

    The attempt row, with its idempotency key, is committed before Stripe is called; an
    attempt left without an answer (the worker died, the connection dropped) is settled by
    asking Stripe before anything is sent again. Never two charges for one invoice (F5)."""
    at = at or timezone.now()
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account", "subscription")
            .get(pk=invoice_id)
        )
        if invoice.status not in CHARGEABLE or invoice.kind != InvoiceKind.INVOICE:
            return None  # re-checked unpaid just before the attempt
        in_flight = (
            invoice.attempts.filter(status__in=[A.CREATED, A.UNKNOWN]).order_by("-number").first()
        )
        if in_flight is None:
            if not _within_spending_cap(invoice, at):
                return None
            method = default_payment_method(invoice.account_id)
            number = (invoice.attempts.aggregate(n=Max("number"))["n"] or 0) + 1
            in_flight = PaymentAttempt.objects.create(
                invoice=invoice,
                number=number,
                trigger=trigger,
                idempotency_key=f"invoice-{invoice.pk}-attempt-{number}",
                amount_minor=invoice.total_minor,
                currency=invoice.currency,
                created_at=at,
            )
            if method is None:
                _apply(
                    in_flight,
                    gateway.ChargeResult(
                        "failed",
                        failure_code="no_payment_method",
                        failure_reason=gateway.reason_for("no_payment_method"),
                    ),
                    at,
                )
                return in_flight
    return _send(in_flight, at)


def _send(attempt: PaymentAttempt, at: datetime) -> PaymentAttempt:
    found = gateway.payment_intent_find(idempotency_key=attempt.idempotency_key)
    if found is not None:  # an earlier call got through: adopt its answer, charge nothing
        result = found
    else:
        account = attempt.invoice.account
        method = default_payment_method(account.pk)
        if method is None:
            result = gateway.ChargeResult(
                "failed",
                failure_code="no_payment_method",
                failure_reason=gateway.reason_for("no_payment_method"),
            )
        else:
            result = gateway.charge_off_session(
                customer=customer_ensure(account=account),
                payment_method=method.stripe_id,
                amount_minor=attempt.amount_minor,
                currency=attempt.currency,
                idempotency_key=attempt.idempotency_key,
                metadata={
                    "attempt": attempt.idempotency_key,
                    "invoice": attempt.invoice.number or "",
                },
            )
    _apply(attempt, result, at)
    return attempt


def _within_spending_cap(invoice: Invoice, at: datetime) -> bool:
    """P8: a charge over the account's approved cap for the period is not attempted; the
    invoice is held and the operators are told."""
    subscription = invoice.subscription
    if subscription is None or subscription.spending_cap_minor is None:
        return True
    charged = (
        Invoice.objects.filter(
            subscription=subscription,
            status=S.PAID,
            kind=InvoiceKind.INVOICE,
            period_start__gte=subscription.current_period_start,
        ).aggregate(total=Sum("total_minor"))["total"]
        or 0
    )
    if pricing.within_spending_cap(
        charge_minor=invoice.total_minor,
        already_charged_in_period_minor=charged,
        cap_minor=subscription.spending_cap_minor,
    ):
        return True
    reason = f"over the approved spending cap of {subscription.spending_cap_minor} (P8)"
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    if not dunning.held_reason:
        dunning.held_reason = reason
        dunning.save(update_fields=["held_reason"])
        transaction.on_commit(
            lambda: mail_admins(f"Invoice {invoice.number} held", f"Not charged: {reason}.")
        )
    return False


# --- outcomes -------------------------------------------------------------------------------


def _apply(attempt: PaymentAttempt, result: gateway.ChargeResult, at: datetime) -> None:
    """Record an attempt's answer and move the invoice, the subscription and the schedules."""
    with transaction.atomic():
        attempt = (
            PaymentAttempt.objects.select_for_update(of=("self",))
            .select_related("invoice")
            .get(pk=attempt.pk)
        )
        if attempt.status in (A.SUCCEEDED, A.FAILED) and result.status != A.SUCCEEDED:
            return  # an answer is recorded once; only a success can still follow a failure
        attempt.status = result.status
        attempt.stripe_payment_intent = result.payment_intent or attempt.stripe_payment_intent
        attempt.client_secret = result.client_secret or attempt.client_secret
        attempt.failure_code, attempt.failure_reason = result.failure_code, result.failure_reason
        attempt.is_hard_decline = result.is_hard_decline
        attempt.completed_at = at if result.status != A.UNKNOWN else None
        attempt.save()
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account", "subscription")
            .get(pk=attempt.invoice_id)
        )
        if result.status == A.SUCCEEDED:
            _paid(invoice, attempt, at)
        elif result.status == A.REQUIRES_ACTION:
            _needs_confirmation(invoice, attempt, at)
        elif result.status == A.FAILED:
            _failed(invoice, attempt, at)


def _paid(invoice: Invoice, attempt: PaymentAttempt, at: datetime) -> None:
    if invoice.status == S.PAID:
        return
    invoice_transition(
        invoice=invoice, to=S.PAID, reason=f"attempt {attempt.number} succeeded", at=at
    )
    Dunning.objects.filter(invoice=invoice).delete()
    emails.send("payment_succeeded", invoice.account, invoice=invoice, attempt=attempt)
    subscription = invoice.subscription
    if subscription is not None and not _other_unpaid(invoice):
        was = subscription.status
        if (
            subscription_transition(
                subscription_id=subscription.pk,
                to=Subscription.Status.ACTIVE,
                reason=f"invoice {invoice.number} paid",
                at=at,
            )
            and was == Subscription.Status.SUSPENDED
        ):
            emails.send("subscription_reactivated", invoice.account, invoice=invoice)


def _other_unpaid(invoice: Invoice) -> bool:
    return (
        Invoice.objects.filter(
            subscription=invoice.subscription,
            kind=InvoiceKind.INVOICE,
            status__in=[S.PAST_DUE, S.REQUIRES_CONFIRMATION],
        )
        .exclude(pk=invoice.pk)
        .exists()
    )


def _needs_confirmation(invoice: Invoice, attempt: PaymentAttempt, at: datetime) -> None:
    """F2: the bank wants the customer: email a secure link, remind on a schedule."""
    if invoice.status not in CHARGEABLE:
        return
    if invoice.status != S.REQUIRES_CONFIRMATION:
        invoice_transition(
            invoice=invoice, to=S.REQUIRES_CONFIRMATION, reason="authentication required", at=at
        )
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    dunning.confirmation_requested_at = at
    dunning.reminders_sent = 0
    dunning.next_reminder_at = at + timedelta(days=REMINDER_AFTER_DAYS[0])
    dunning.next_retry_at = None
    dunning.suspend_at = dunning.suspend_at or at + SUSPEND_AFTER
    dunning.save()
    emails.send(
        "confirmation_required", invoice.account, invoice=invoice, url=confirmation_url(attempt)
    )


def _failed(invoice: Invoice, attempt: PaymentAttempt, at: datetime) -> None:
    """F3: past due, the reason in words, retries on a schedule (not after a hard decline)."""
    if invoice.status not in CHARGEABLE:
        return
    if invoice.status != S.PAST_DUE:
        invoice_transition(invoice=invoice, to=S.PAST_DUE, reason=attempt.failure_reason, at=at)
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    dunning.first_failed_at = dunning.first_failed_at or at
    dunning.suspend_at = dunning.suspend_at or dunning.first_failed_at + SUSPEND_AFTER
    dunning.next_reminder_at = None
    failures = invoice.attempts.filter(status=A.FAILED).count()
    retry = None
    if not attempt.is_hard_decline and failures <= len(RETRY_AFTER_DAYS):
        retry = dunning.first_failed_at + timedelta(days=RETRY_AFTER_DAYS[failures - 1])
    dunning.next_retry_at = retry
    dunning.save()
    if invoice.subscription_id and invoice.subscription.status == Subscription.Status.ACTIVE:
        subscription_transition(
            subscription_id=invoice.subscription_id,
            to=Subscription.Status.PAST_DUE,
            reason=f"invoice {invoice.number}: {attempt.failure_reason}",
            at=at,
        )
    emails.send(
        "payment_failed", invoice.account, invoice=invoice, attempt=attempt, next_retry_at=retry
    )


# --- the secure confirmation page ------------------------------------------------------------

_SALT = "billing.confirm-payment"


def confirmation_path(attempt: PaymentAttempt) -> str:
    """The secure page's path: a signed, expiring token names the attempt (F2)."""
    from django.urls import reverse

    token = signing.dumps({"attempt": attempt.pk}, salt=_SALT, compress=True)
    return reverse("confirm-payment", args=[token])


def confirmation_url(attempt: PaymentAttempt) -> str:
    """The link emails carry."""
    from django.conf import settings

    return settings.SITE_URL + confirmation_path(attempt)


def attempt_from_token(token: str) -> PaymentAttempt:
    """The attempt a confirmation link was made for; raises Conflict when expired or forged."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=CONFIRMATION_LINK_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise Conflict("This confirmation link has expired.", code="link_expired") from exc
    except signing.BadSignature as exc:
        raise Conflict("This confirmation link is not valid.", code="link_invalid") from exc
    attempt = (
        PaymentAttempt.objects.select_related("invoice__account")
        .filter(pk=data.get("attempt"))
        .first()
    )
    if attempt is None:
        raise Conflict("This confirmation link is not valid.", code="link_invalid")
    return attempt


def confirmation_completed(
    *, attempt: PaymentAttempt, at: datetime | None = None
) -> PaymentAttempt:
    """After Stripe.js finished on the secure page: Stripe says what happened, not the browser."""
    at = at or timezone.now()
    if attempt.stripe_payment_intent:
        _apply(
            attempt, gateway.payment_intent_get(payment_intent=attempt.stripe_payment_intent), at
        )
    attempt.refresh_from_db()
    return attempt


def confirmation_attempt(*, invoice: Invoice) -> PaymentAttempt | None:
    """The attempt waiting for the customer, if the invoice needs confirming (F2)."""
    if invoice.status != S.REQUIRES_CONFIRMATION:
        return None
    return invoice.attempts.filter(status=A.REQUIRES_ACTION).order_by("-number").first()


# --- schedules (run by run_billing) -----------------------------------------------------------


def dunning_run(*, as_of: datetime) -> dict[str, int]:
    """Due automatic retries, confirmation reminders, suspensions, and reconciliation of
    attempts whose answer was lost."""
    done = {"retries": 0, "reminders": 0, "suspensions": 0, "reconciled": 0}
    for attempt in PaymentAttempt.objects.filter(
        status__in=[A.CREATED, A.UNKNOWN], created_at__lte=as_of - IN_FLIGHT_TIMEOUT
    ).select_related("invoice__account"):
        _reconcile(attempt, as_of)
        done["reconciled"] += 1
    for dunning in Dunning.objects.filter(next_retry_at__lte=as_of).select_related("invoice"):
        Dunning.objects.filter(pk=dunning.pk).update(next_retry_at=None)
        if invoice_charge(invoice_id=dunning.invoice_id, trigger="automatic_retry", at=as_of):
            done["retries"] += 1
    for dunning in Dunning.objects.filter(next_reminder_at__lte=as_of).select_related(
        "invoice__account"
    ):
        attempt = confirmation_attempt(invoice=dunning.invoice)
        sent = dunning.reminders_sent + 1
        later = REMINDER_AFTER_DAYS[sent] if sent < len(REMINDER_AFTER_DAYS) else None
        Dunning.objects.filter(pk=dunning.pk).update(
            reminders_sent=sent,
            next_reminder_at=dunning.confirmation_requested_at + timedelta(days=later)
            if later
            else None,
        )
        if attempt is not None:
            emails.send(
                "confirmation_reminder",
                dunning.invoice.account,
                invoice=dunning.invoice,
                url=confirmation_url(attempt),
                reminder=sent,
            )
            done["reminders"] += 1
    for dunning in Dunning.objects.filter(suspend_at__lte=as_of).select_related(
        "invoice__subscription", "invoice__account"
    ):
        Dunning.objects.filter(pk=dunning.pk).update(suspend_at=None, next_retry_at=None)
        invoice = dunning.invoice
        unpaid = invoice.status in (S.PAST_DUE, S.REQUIRES_CONFIRMATION) and invoice.subscription_id
        if unpaid and subscription_transition(
            subscription_id=invoice.subscription_id,
            to=Subscription.Status.SUSPENDED,
            reason=f"invoice {invoice.number} unpaid after retries",
            at=as_of,
        ):
            emails.send("subscription_suspended", invoice.account, invoice=invoice)
            done["suspensions"] += 1
    return done


def _reconcile(attempt: PaymentAttempt, at: datetime) -> None:
    """An attempt whose outcome was lost: ask Stripe, never charge again blindly."""
    if attempt.stripe_payment_intent:
        result = gateway.payment_intent_get(payment_intent=attempt.stripe_payment_intent)
    else:
        result = gateway.payment_intent_find(idempotency_key=attempt.idempotency_key)
        if result is None:  # Stripe never saw it: it can be sent, once, with the same key
            _send(attempt, at)
            return
    if result.status != A.UNKNOWN:
        _apply(attempt, result, at)


def payment_intent_changed(
    *, payment_intent: str, attempt_key: str = "", at: datetime | None = None
) -> bool:
    """A webhook said an intent changed: apply what Stripe says it is now (converges whatever
    the order or number of deliveries)."""
    at = at or timezone.now()
    attempt = PaymentAttempt.objects.filter(stripe_payment_intent=payment_intent).first()
    if attempt is None and attempt_key:
        attempt = PaymentAttempt.objects.filter(idempotency_key=attempt_key).first()
    if attempt is None:
        return False
    _apply(attempt, gateway.payment_intent_get(payment_intent=payment_intent), at)
    return True
