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
from django.db.models import Exists, Max, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from accounts.errors import Conflict, DomainError
from accounts.models import Account
from audit.services import audit_record
from plans import pricing
from plans.models import Subscription
from plans.money import format_money
from plans.services import subscription_transition

from . import gateway, invoicing, notifications
from .invoicing import invoice_transition
from .models import Dunning, Invoice, InvoiceKind, InvoiceStatus, PaymentAttempt, PaymentMethod

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
# An attempt with no recorded answer after this long is settled by asking Stripe: longer than
# a Stripe call can take (STRIPE_TIMEOUT_SECONDS, with the library's retries).
IN_FLIGHT_TIMEOUT = timedelta(minutes=5)
# Attempts waiting for Stripe's answer: at most one per invoice.
IN_FLIGHT = (A.CREATED, A.SENDING, A.UNKNOWN)


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


# --- collecting -----------------------------------------------------------------------------


class PaymentInProgress(Conflict):
    code = "payment_in_progress"


def _in_progress(invoice: Invoice) -> PaymentInProgress:
    return PaymentInProgress(
        f"A payment for invoice {invoice.number} is already in progress. "
        "Its result will show here in a moment.",
        details={"invoice": invoice.number},
    )


def collectable_invoices(*, account_id: int | None = None) -> QuerySet[Invoice]:
    """The outbox: issued invoices never attempted whose account has a card.

    Every path that issues an invoice (start, close, upgrade, operator) commits it `open` in
    its own transaction; this sweep is the one way from there to a charge, so an invoice is
    collected even if the process that issued it died before handing it on, or the card was
    saved after it was issued. Past-due and held invoices follow their own schedules."""
    invoices = (
        Invoice.objects.all()
        if account_id is None
        else Invoice.objects.filter(account_id=account_id)
    )
    return (
        invoices.filter(
            status=S.OPEN,
            kind=InvoiceKind.INVOICE,
            total_minor__gt=0,
            account__payment_methods__is_default=True,
        )
        .filter(~Exists(PaymentAttempt.objects.filter(invoice=OuterRef("pk"))))
        .exclude(dunning__held_reason__gt="")
    )


def collectable_invoice_ids(*, account_id: int | None = None, limit: int = 5000) -> list[int]:
    """The outbox's invoices, oldest first."""
    return list(
        collectable_invoices(account_id=account_id)
        .order_by("issued_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def invoice_collect(*, invoice_id: int, at: datetime | None = None) -> PaymentAttempt | None:
    """The sweeper's and the tasks' entry: charge if still due; a charge already in flight
    (another worker, a customer's click) is left to finish, not joined."""
    try:
        return invoice_charge(invoice_id=invoice_id, trigger="automatic", at=at)
    except PaymentInProgress:
        return None


def invoice_charge(
    *, invoice_id: int, trigger: str, at: datetime | None = None
) -> PaymentAttempt | None:
    """Try to collect an invoice now; None when there is nothing to collect. Raises
    PaymentInProgress when another attempt of this invoice is waiting for Stripe.

    The one collection path, whoever asks (sweeper, retry schedule, Retry payment, the API, an
    operator). At most one charge per invoice is ever in flight: the attempt is created under
    the invoice's row lock only if no other attempt is unanswered (a partial unique index
    holds it too), committed with its idempotency key, then claimed `created → sending` by a
    conditional update; only the claimant calls Stripe (F5)."""
    at = at or timezone.now()
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account", "subscription")
            .get(pk=invoice_id)
        )
        if invoice.status not in CHARGEABLE or invoice.kind != InvoiceKind.INVOICE:
            return None  # re-checked unpaid just before the attempt
        if invoice.attempts.filter(status__in=IN_FLIGHT).exists():
            raise _in_progress(invoice)
        due = invoicing.amount_due(invoice)
        if due <= 0:  # credit notes cover it: settled without a charge
            invoicing.invoice_settle(invoice=invoice, reason="fully credited", at=at)
            return None
        if not _within_spending_cap(invoice, at):
            return None
        method = default_payment_method(invoice.account_id)
        number = (invoice.attempts.aggregate(n=Max("number"))["n"] or 0) + 1
        attempt = PaymentAttempt.objects.create(
            invoice=invoice,
            number=number,
            trigger=trigger,
            idempotency_key=f"invoice-{invoice.pk}-attempt-{number}",
            amount_minor=due,
            currency=invoice.currency,
            payment_method=method.stripe_id if method else "",
            created_at=at,
        )
        if method is None:
            _apply(attempt, _no_payment_method(), at)
            attempt.refresh_from_db()
            return attempt
    return _send(attempt, at)


def _no_payment_method() -> gateway.ChargeResult:
    return gateway.ChargeResult(
        "failed",
        failure_code="no_payment_method",
        failure_reason=gateway.reason_for("no_payment_method"),
    )


def _claim(attempt: PaymentAttempt) -> bool:
    """created → sending, by one caller only (the row count says who won)."""
    return bool(
        PaymentAttempt.objects.filter(pk=attempt.pk, status=A.CREATED).update(
            status=A.SENDING, sending_at=timezone.now()
        )
    )


def _send(attempt: PaymentAttempt, at: datetime) -> PaymentAttempt:
    if not _claim(attempt):
        raise _in_progress(attempt.invoice)
    _apply(attempt, _charge(attempt), at)
    attempt.refresh_from_db()
    return attempt


def _charge(attempt: PaymentAttempt) -> gateway.ChargeResult:
    """The Stripe call of an attempt: the same body every time it is sent, so that Stripe's
    idempotency replays the first answer instead of charging again."""
    account = attempt.invoice.account
    return gateway.charge_off_session(
        customer=customer_ensure(account=account),
        payment_method=attempt.payment_method,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        idempotency_key=attempt.idempotency_key,
        metadata={"attempt": attempt.idempotency_key, "invoice": attempt.invoice.number or ""},
    )


def _within_spending_cap(invoice: Invoice, at: datetime) -> bool:
    """P8: a charge over the account's approved cap for the period is not attempted; the
    invoice is held (its reason shows in the API and the admin), and the people who can act
    are told: the account's billing email and its owners and admins, and the site's admins."""
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
    if Dunning.objects.filter(invoice=invoice, hold_released_at__isnull=False).exists():
        return True  # an operator approved this charge over the cap (invoice_release_hold)
    cap, already, total = (
        format_money(amount, invoice.currency)
        for amount in (subscription.spending_cap_minor, charged, invoice.total_minor)
    )
    reason = (
        f"Over the approved spending cap of {cap} for the period: {already} already charged,"
        f" this invoice {total} (P8)."
    )
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    if not dunning.held_reason:
        dunning.held_reason = reason[:200]
        dunning.held_at = at
        dunning.save(update_fields=["held_reason", "held_at"])
        logger.warning("invoice %s held: %s", invoice.number, reason)
        account = invoice.account
        notifications.send(
            "invoice_held",
            account,
            also=notifications.billing_managers(account),
            invoice=invoice,
            reason=reason,
        )
        # Operators too, when the site has any (ADMINS); the admin's invoice list shows it.
        transaction.on_commit(
            lambda: mail_admins(f"Invoice {invoice.number} held", f"Not charged: {reason}")
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
        audit_record(
            action="payment_attempt.status",
            obj=attempt,
            before=attempt.status,
            after=result.status,
            reason=result.failure_reason or result.failure_code,
            at=at,
            account_id=attempt.invoice.account_id,
            label=f"{attempt.invoice.number} #{attempt.number}",
        )
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
    invoicing.invoice_settle(
        invoice=invoice, reason=f"attempt {attempt.number} succeeded", at=at, attempt=attempt
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
    notifications.send(
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
    notifications.send(
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


# --- answers that were lost ---------------------------------------------------------------


def attempts_reconcile(*, as_of: datetime) -> int:
    """Settle attempts left without an answer (the worker died, the connection dropped)."""
    stale = PaymentAttempt.objects.filter(
        status__in=IN_FLIGHT, created_at__lte=as_of - IN_FLIGHT_TIMEOUT
    ).filter(Q(sending_at__isnull=True) | Q(sending_at__lte=as_of - IN_FLIGHT_TIMEOUT))
    settled = 0
    for attempt in stale.select_related("invoice__account"):
        settled += _reconcile(attempt, as_of)
    return settled


def _reconcile(attempt: PaymentAttempt, at: datetime) -> int:
    """Ask Stripe what became of an attempt; never charge again blindly.

    Never claimed (`created`): nothing was sent, so it is sent now, once. Claimed but
    unanswered: it is re-claimed (conditional update on the old claim time, so two sweepers
    cannot both do it), then looked up by the intent id if Stripe ever gave us one, else sent
    again with the same idempotency key and the same body: Stripe answers a repeated key with
    the first request's response for 24 hours and charges nothing more. Past that window the
    intent is searched for by the key in its metadata."""
    if attempt.status == A.CREATED:
        try:
            _send(attempt, at)
        except PaymentInProgress:
            return 0
        return 1
    now = timezone.now()
    reclaimed = PaymentAttempt.objects.filter(
        pk=attempt.pk, status=attempt.status, sending_at=attempt.sending_at
    ).update(status=A.SENDING, sending_at=now)
    if not reclaimed:
        return 0
    if attempt.stripe_payment_intent:
        result = gateway.payment_intent_get(payment_intent=attempt.stripe_payment_intent)
    elif now - attempt.created_at < gateway.IDEMPOTENCY_WINDOW:
        result = _charge(attempt)
    else:
        result = gateway.payment_intent_search(idempotency_key=attempt.idempotency_key)
        if result is None:
            result = gateway.ChargeResult("unknown")
            logger.error("attempt %s: no answer and past Stripe's key window", attempt)
    _apply(attempt, result, at)
    return int(result.status != A.UNKNOWN)


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
