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

from accounts.errors import Conflict, DomainError, NotFound
from accounts.models import Account, BillingChannel
from accounts.services import Acceptor, terms_accept
from audit.services import audit_record
from plans import pricing
from plans.models import Subscription
from plans.money import format_money
from plans.services import subscription_transition
from retries import FiniteTable

from . import gateway, invoicing, notifications, shopify_usage
from .invoicing import invoice_transition
from .models import (
    UNPAID,
    Dunning,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PaymentAttempt,
    PaymentMethod,
    ShopifyUsageRecord,
)

logger = logging.getLogger(__name__)

S = InvoiceStatus
A = PaymentAttempt.Status
# After a failed charge: automatic retries on these days after the first failure, 8 tries
# within 2 weeks in all (Stripe's recommendation). A hard decline is not retried automatically.
RETRIES = FiniteTable(tuple(timedelta(days=d) for d in (1, 2, 4, 6, 8, 11, 14)))
# A payment waiting for the customer's confirmation: reminders on these days after the request.
REMINDERS = FiniteTable(tuple(timedelta(days=d) for d in (1, 3, 7)))
# Unpaid this long after its first failure or confirmation request: the subscription is
# suspended (F4).
SUSPEND_AFTER = timedelta(days=14)
CONFIRMATION_LINK_MAX_AGE = timedelta(days=30)
# "Email the link again": at most this often.
LINK_RESEND_AFTER = timedelta(minutes=10)
# An attempt with no recorded answer after this long is settled by asking Stripe: longer than
# a Stripe call can take (STRIPE_TIMEOUT_SECONDS, with the library's retries).
IN_FLIGHT_TIMEOUT = timedelta(minutes=5)
# Attempts waiting for Stripe's answer: at most one per invoice.
IN_FLIGHT = (A.CREATED, A.SENDING, A.UNKNOWN)
FINISHED = (A.SUCCEEDED, A.FAILED, A.CANCELED)


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


def payment_method_set(
    *, account: Account, stripe_payment_method: str, accepted_by: Acceptor | None = None
) -> PaymentMethod:
    """Attach a card collected by Stripe.js (or a partner's card form) and make it the
    default for charges; with `accepted_by`, the terms' acceptance that authorises charging it
    is recorded in the same transaction (none is recorded for a card set up by a command)."""
    customer = customer_ensure(account=account)
    try:
        card = gateway.payment_method_attach(
            customer=customer, payment_method=stripe_payment_method
        )
    except gateway.PaymentMethodMissing as exc:
        # A well-formed id that names nothing: a 404 like any other unknown object.
        raise NotFound(str(exc), details={"field": "stripe_payment_method"}) from exc
    except gateway.GatewayError as exc:
        raise DomainError(str(exc), code="payment_method_refused") from exc
    with transaction.atomic():
        previous = default_payment_method(account.pk)
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
        audit_record(
            action="payment_method.saved",
            obj=method,
            before=str(previous) if previous else None,
            after=f"{method} (expires {method.exp_month:02d}/{method.exp_year})",
            label=str(method),
        )
        if accepted_by is not None:
            terms_accept(account=account, by=accepted_by, card=f"{method} ({method.stripe_id})")
    return method


def default_payment_method(account_id: int) -> PaymentMethod | None:
    return PaymentMethod.objects.filter(account_id=account_id, is_default=True).first()


# --- collecting -----------------------------------------------------------------------------


class PaymentInProgress(Conflict):
    code = "payment_in_progress"


class AwaitingConfirmation(PaymentInProgress):
    """The invoice's payment waits for the customer at their bank (F2): a second payment could
    be confirmed beside it, so none is made while it waits."""

    code = "awaiting_confirmation"
    path = ""


class NoPaymentMethod(Conflict):
    code = "no_payment_method"


def _in_progress(invoice: Invoice) -> PaymentInProgress:
    return PaymentInProgress(
        f"A payment for invoice {invoice.number} is already in progress. "
        "Its result will show here in a moment.",
        details={"invoice": invoice.number},
    )


def _awaiting(invoice: Invoice, attempt: PaymentAttempt) -> AwaitingConfirmation:
    error = AwaitingConfirmation(
        f"The payment of invoice {invoice.number} waits for your confirmation with your bank: "
        "confirm it on the secure page (the link we emailed, or Confirm payment). No other "
        "payment is made while it waits.",
        details={"invoice": invoice.number, "confirmation_url": confirmation_url(attempt)},
    )
    error.path = confirmation_path(attempt)  # where a page sends the customer
    return error


def _no_card(invoice: Invoice) -> NoPaymentMethod:
    return NoPaymentMethod(
        f"Add a card first: there is nothing to charge invoice {invoice.number} to.",
        details={"invoice": invoice.number},
    )


def collectable_invoices(*, account_id: int | None = None) -> QuerySet[Invoice]:
    """The outbox: issued invoices to hand to the charge path.

    Every path that issues an invoice (start, close, upgrade, operator) commits it `open` in
    its own transaction; this sweep is the one way from there to a charge, so an invoice is
    collected even if the process that issued it died before handing it on, or the card was
    saved after it was issued. Past-due and held invoices follow their own schedules, except
    one whose retries stopped for want of a card: it goes as soon as there is one. Accounts
    without a card are left alone (invoiced customers paying by transfer).

    On the Shopify channel (no card: Shopify bills the shop) an open invoice is collected by
    posting its usage records, unless a record waits for Shopify's answer (reconcile settles
    it) or the invoice is held over the cap."""
    invoices = (
        Invoice.objects.all()
        if account_id is None
        else Invoice.objects.filter(account_id=account_id)
    )
    never_attempted = Q(status=S.OPEN) & ~Exists(
        PaymentAttempt.objects.filter(invoice=OuterRef("pk"))
    )
    waiting_for_card = Q(status__in=UNPAID, dunning__card_requested_at__isnull=False)
    shopify = Q(account__billing_channel=BillingChannel.SHOPIFY)
    through_shopify = (
        shopify
        & Q(status=S.OPEN)
        & ~Exists(
            ShopifyUsageRecord.objects.filter(
                invoice=OuterRef("pk"), status__in=shopify_usage.IN_FLIGHT
            )
        )
    )
    # Accounts first (a card, or the Shopify channel), then their invoices: the planner starts
    # from those accounts as it did from the cards alone, rather than from every invoice.
    collected = Account.objects.filter(
        Q(pk__in=PaymentMethod.objects.filter(is_default=True).values("account_id"))
        | Q(billing_channel=BillingChannel.SHOPIFY)
    )
    return (
        invoices.filter(
            kind=InvoiceKind.INVOICE, total_minor__gt=0, account_id__in=collected.values("pk")
        )
        .filter((~shopify & (never_attempted | waiting_for_card)) | through_shopify)
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
    PaymentInProgress when another attempt of this invoice is waiting for Stripe,
    AwaitingConfirmation when one waits for the customer (F2), and NoPaymentMethod when a
    person asks for a charge and the account has no card.

    The one collection path, whoever asks (sweeper, retry schedule, Retry payment, the API, an
    operator). At most one payment per invoice is ever live: the attempt is created under the
    invoice's row lock only if no other attempt is unanswered (a partial unique index holds it
    too) or waiting for the customer, committed with its idempotency key, then claimed
    `created → sending` by a conditional update; only the claimant calls Stripe (F5). A payment
    waiting for the customer is replaced only when it must be (another card, an expired link),
    and then cancelled at Stripe first, so no link ever sent can confirm a second charge.

    An account paying through Shopify is collected by posting usage records instead, the same
    way (billing.shopify_usage); a person's Retry there also sends what Shopify refused."""
    at = at or timezone.now()
    if Invoice.objects.filter(
        pk=invoice_id, account__billing_channel=BillingChannel.SHOPIFY
    ).exists():
        shopify_usage.invoice_post(invoice_id=invoice_id, at=at, retry_failed=trigger in PEOPLE)
        return None
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account", "subscription")
            .get(pk=invoice_id)
        )
        if invoice.status not in UNPAID or invoice.kind != InvoiceKind.INVOICE:
            return None  # re-checked unpaid just before the attempt
        if invoice.attempts.filter(status__in=IN_FLIGHT).exists():
            raise _in_progress(invoice)
        method = default_payment_method(invoice.account_id)
        waiting = invoice.attempts.filter(status=A.REQUIRES_ACTION).order_by("number").first()
        if waiting is not None:
            if not _must_replace(waiting, method):
                raise _awaiting(invoice, waiting)
            # Claimed like a charge (requires_action → sending): while it is being cancelled
            # it is in flight, and nobody else can open a payment beside it.
            if not PaymentAttempt.objects.filter(pk=waiting.pk, status=A.REQUIRES_ACTION).update(
                status=A.SENDING, sending_at=timezone.now()
            ):
                raise _in_progress(invoice)
        else:
            due = invoicing.amount_due(invoice)
            if due <= 0:  # credit notes cover it: settled without a charge
                invoicing.invoice_settle(invoice=invoice, reason="fully credited", at=at)
                return None
            if not _within_spending_cap(invoice, due, at):
                return None
            if method is None:
                if trigger in PEOPLE:
                    raise _no_card(invoice)
                _await_card(invoice, at)
                return None
            attempt = _attempt_create(invoice, trigger, due, method, at)
    if waiting is not None:
        if _replace(waiting, at) != A.CANCELED:
            waiting.refresh_from_db()
            return waiting  # the customer confirmed it meanwhile, or Stripe did not answer
        return invoice_charge(invoice_id=invoice_id, trigger=trigger, at=at)
    return _send(attempt, at)


# Who asked for the charge: a person is told why nothing happens; the schedules wait.
PEOPLE = ("retry", "operator")


def _attempt_create(
    invoice: Invoice, trigger: str, due: int, method: PaymentMethod, at: datetime
) -> PaymentAttempt:
    number = (invoice.attempts.aggregate(n=Max("number"))["n"] or 0) + 1
    Dunning.objects.filter(invoice=invoice).update(card_requested_at=None)
    return PaymentAttempt.objects.create(
        invoice=invoice,
        number=number,
        trigger=trigger,
        idempotency_key=f"invoice-{invoice.pk}-attempt-{number}",
        amount_minor=due,
        currency=invoice.currency,
        payment_method=method.stripe_id,
        created_at=at,
    )


def _must_replace(waiting: PaymentAttempt, method: PaymentMethod | None) -> bool:
    """A payment waiting for the customer stands until it cannot succeed as it is: the
    customer saved another card, or the last link we emailed for it has expired (by the wall
    clock: links are signed with it)."""
    if method is None:
        return False
    if method.stripe_id != waiting.payment_method:
        return True
    sent = (
        Dunning.objects.filter(invoice_id=waiting.invoice_id)
        .values_list("link_sent_at", flat=True)
        .first()
    )
    return timezone.now() - (sent or waiting.created_at) > CONFIRMATION_LINK_MAX_AGE


def _replace(waiting: PaymentAttempt, at: datetime) -> str:
    """Cancel a claimed waiting payment at Stripe; returns what the attempt became."""
    if waiting.stripe_payment_intent:
        result = gateway.payment_intent_cancel(
            payment_intent=waiting.stripe_payment_intent,
            idempotency_key=f"{waiting.idempotency_key}-cancel",
        )
    else:  # Stripe never named an intent: no link can confirm anything
        result = gateway.ChargeResult("canceled")
    _apply(waiting, result, at)
    waiting.refresh_from_db(fields=["status"])
    return waiting.status


def _await_card(invoice: Invoice, at: datetime) -> None:
    """No card to charge: no attempt that cannot succeed, no retry schedule. The customer is
    asked for a card once; saving one collects the invoice at once (collectable_invoices)."""
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    if dunning.card_requested_at is not None:
        return
    dunning.card_requested_at = at
    dunning.next_retry_at = None
    dunning.save(update_fields=["card_requested_at", "next_retry_at"])
    audit_record(
        action="invoice.card_requested",
        obj=invoice,
        reason="no card to charge: collection waits for one",
        at=at,
        account_id=invoice.account_id,
        label=invoice.number or "",
    )
    notifications.send("card_required", invoice.account, invoice=invoice)


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


def _within_spending_cap(invoice: Invoice, due: int, at: datetime) -> bool:
    """P8: a charge over the account's approved cap for the period is not attempted; the
    invoice is held (its reason shows in the API and the admin), and the people who can act
    are told: the account's billing email and its owners and admins, and the site's admins.

    What the period was charged is every successful charge made while it was in force, whatever
    invoice carried it: a close invoice is issued at the start of the next period for the
    closed month's usage and the new month's fees, and what it charges counts toward the new
    period's cap (docs/pricing.md, P8)."""
    subscription = invoice.subscription
    if subscription is None or subscription.spending_cap_minor is None:
        return True
    charged = period_charged_minor(subscription=subscription)
    if pricing.within_spending_cap(
        charge_minor=due,
        already_charged_in_period_minor=charged,
        cap_minor=subscription.spending_cap_minor,
    ):
        return True
    if Dunning.objects.filter(invoice=invoice, hold_released_at__isnull=False).exists():
        return True  # an operator approved this charge over the cap (invoice_release_hold)
    cap, already, total = (
        format_money(amount, invoice.currency)
        for amount in (subscription.spending_cap_minor, charged, due)
    )
    reason = (
        f"Over the approved spending cap of {cap} for the period: {already} already charged,"
        f" this invoice {total}."
    )
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    if not dunning.held_reason:
        dunning.held_reason = reason[:200]
        dunning.held_at = at
        dunning.save(update_fields=["held_reason", "held_at"])
        audit_record(
            action="invoice.held",
            obj=invoice,
            after="held",
            reason=reason,
            at=at,
            account_id=invoice.account_id,
            label=invoice.number or "",
        )
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


def period_charged_minor(*, subscription: Subscription) -> int:
    """What the subscription's period in force was charged so far (P8): the successful
    charges made from its start, whatever invoice and period they were for."""
    return (
        PaymentAttempt.objects.filter(
            invoice__subscription=subscription,
            status=A.SUCCEEDED,
            created_at__gte=subscription.current_period_start,
            created_at__lt=subscription.current_period_end,
        ).aggregate(total=Sum("amount_minor"))["total"]
        or 0
    )


# --- outcomes -------------------------------------------------------------------------------


def _apply(attempt: PaymentAttempt, result: gateway.ChargeResult, at: datetime) -> None:
    """Record an attempt's answer and move the invoice, the subscription and the schedules."""
    with transaction.atomic():
        attempt = (
            PaymentAttempt.objects.select_for_update(of=("self",))
            .select_related("invoice")
            .get(pk=attempt.pk)
        )
        if attempt.status in FINISHED and result.status != A.SUCCEEDED:
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
    if invoice.status not in UNPAID:
        return
    if invoice.status != S.REQUIRES_CONFIRMATION:
        invoice_transition(
            invoice=invoice, to=S.REQUIRES_CONFIRMATION, reason="authentication required", at=at
        )
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    dunning.confirmation_requested_at = at
    dunning.reminders_sent = 0
    dunning.next_reminder_at = at + REMINDERS.waits[0]
    dunning.next_retry_at = None
    dunning.suspend_at = dunning.suspend_at or at + SUSPEND_AFTER
    dunning.link_sent_at = timezone.now()
    dunning.save()
    notifications.send(
        "confirmation_required", invoice.account, invoice=invoice, url=confirmation_url(attempt)
    )


def _failed(invoice: Invoice, attempt: PaymentAttempt, at: datetime) -> None:
    """F3: past due, the reason in words, retries on a schedule (not after a hard decline)."""
    if invoice.status not in UNPAID:
        return
    if invoice.status != S.PAST_DUE:
        invoice_transition(invoice=invoice, to=S.PAST_DUE, reason=attempt.failure_reason, at=at)
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    dunning.first_failed_at = dunning.first_failed_at or at
    dunning.suspend_at = dunning.suspend_at or dunning.first_failed_at + SUSPEND_AFTER
    dunning.next_reminder_at = None
    failures = invoice.attempts.filter(status=A.FAILED).count()
    # Days counted from the first failure: a late retry does not push the next ones back.
    wait = None if attempt.is_hard_decline else RETRIES.wait(failures)
    retry = dunning.first_failed_at + wait if wait is not None else None
    dunning.next_retry_at = retry
    dunning.save()
    if invoice.subscription and invoice.subscription.status == Subscription.Status.ACTIVE:
        subscription_transition(
            subscription_id=invoice.subscription.pk,
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


class TooSoon(DomainError):
    status = 429
    code = "too_soon"


def confirmation_link_resend(*, invoice: Invoice) -> PaymentAttempt:
    """Email the link of the payment waiting for the customer again (F2): the same link, the
    same payment, never a new one; at most once every LINK_RESEND_AFTER (wall clock), so a
    button pressed repeatedly does not flood the customer's inbox."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice.pk)
        attempt = confirmation_attempt(invoice=invoice)
        if attempt is None:
            raise Conflict(
                f"Invoice {invoice.number} has no payment waiting for confirmation.",
                code="nothing_to_confirm",
            )
        dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
        now = timezone.now()
        if dunning.link_sent_at and now - dunning.link_sent_at < LINK_RESEND_AFTER:
            wait = LINK_RESEND_AFTER - (now - dunning.link_sent_at)
            minutes = max(1, round(wait.total_seconds() / 60))
            raise TooSoon(
                f"The link was emailed a moment ago: you can ask for it again in {minutes} "
                f"minute{'s' if minutes != 1 else ''}.",
                details={"retry_after_seconds": int(wait.total_seconds())},
            )
        dunning.link_sent_at = now
        dunning.save(update_fields=["link_sent_at"])
        notifications.send(
            "confirmation_required",
            invoice.account,
            invoice=invoice,
            url=confirmation_url(attempt),
        )
    return attempt


# --- answers that were lost ---------------------------------------------------------------


def attempts_reconcile(*, as_of: datetime) -> int:
    """Settle attempts left without an answer (the worker died, the connection dropped).

    Staleness is judged by the wall clock, never by `as_of`: a claim's time is the wall
    clock's, and a run told to bill as of a later instant (`run_billing --as-of`) must not
    take a charge still in flight for a lost one and send it again. An attempt never claimed
    may go as soon as `as_of` says so: its claim, not its age, decides who sends it."""
    now = timezone.now()
    never_claimed = Q(status=A.CREATED, created_at__lte=as_of - IN_FLIGHT_TIMEOUT)
    unanswered = Q(status__in=(A.SENDING, A.UNKNOWN)) & (
        Q(sending_at__lte=now - IN_FLIGHT_TIMEOUT)
        | Q(sending_at__isnull=True, created_at__lte=now - IN_FLIGHT_TIMEOUT)
    )
    stale = PaymentAttempt.objects.filter(never_claimed | unanswered)
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
    result: gateway.ChargeResult | None
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
