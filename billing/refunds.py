"""Refunds: the part of a credit note on a paid invoice that goes back to the card.

A refund is made like a charge (billing.payments). Its row and idempotency key (derived from
the credit note and the charge, our own rows) are committed in the credit note's transaction;
after the commit one sender claims it `created → sending` by a conditional update and only that
sender calls Stripe. A lost answer leaves it `sending`/`unknown`; after five minutes by the wall
clock the sweep re-claims it and asks Stripe (the charge's refunds, matched by our row id in
their metadata), records what Stripe holds, or sends it again with the same key and body when
Stripe holds nothing. A refund that fails or is cancelled becomes account credit from the same
credit note, and operators are told: money is never lost.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.mail import mail_admins
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.errors import Conflict
from audit.models import Source
from audit.services import acting_as, audit_record
from outbox import services as outbox
from plans.money import format_money

from . import gateway, notifications
from .models import (
    DISPUTE_CLOSED,
    AccountCredit,
    AttemptStatus,
    Dispute,
    Invoice,
    PaymentAttempt,
    PaymentMethod,
    Refund,
)

logger = logging.getLogger(__name__)

R = Refund.Status
# Waiting for Stripe's answer; reconciled when the claim is older than this (as charges are).
IN_FLIGHT = (R.CREATED, R.SENDING, R.UNKNOWN)
IN_FLIGHT_TIMEOUT = timedelta(minutes=5)
# Money that left the balance or may still leave it: what caps further refunds of a charge.
LIVE = (R.CREATED, R.SENDING, R.UNKNOWN, R.PENDING, R.SUCCEEDED)
# Refunds that gave nothing back: their amount is the account's credit.
RETURNED = (R.FAILED, R.CANCELED)
# Which answer may follow which. A success can still be followed by a failure (the card's bank
# returns the money days later); a failure or a cancellation is final.
FOLLOWS: dict[str, set[str]] = {
    R.CREATED: {R.SENDING, R.PENDING, R.SUCCEEDED, R.FAILED, R.CANCELED, R.UNKNOWN},
    R.SENDING: {R.PENDING, R.SUCCEEDED, R.FAILED, R.CANCELED, R.UNKNOWN},
    R.UNKNOWN: {R.PENDING, R.SUCCEEDED, R.FAILED, R.CANCELED},
    R.PENDING: {R.SUCCEEDED, R.FAILED, R.CANCELED},
    R.SUCCEEDED: {R.FAILED, R.CANCELED},
    R.FAILED: set(),
    R.CANCELED: set(),
}


class RefundTooLarge(Conflict):
    code = "refund_too_large"


class ChargeDisputed(RefundTooLarge):
    code = "charge_disputed"


@dataclass(frozen=True)
class Charge:
    """A succeeded charge of an invoice and what Stripe says is still refundable on it."""

    attempt_id: int
    stripe_refundable_minor: int


# --- before the credit note: what Stripe says ---------------------------------------------------


def invoice_charges_refundable(*, invoice: Invoice) -> list[Charge]:
    """The invoice's succeeded card charges, latest first, with what Stripe says is still
    refundable on each. Read before the credit note's transaction: a call to Stripe never
    holds a row lock. Raises Conflict when Stripe cannot be read (no refund on a guess)."""
    attempts = (
        PaymentAttempt.objects.filter(invoice=invoice, status=AttemptStatus.SUCCEEDED)
        .exclude(stripe_payment_intent="")
        .order_by("-completed_at", "-number")
    )
    charges = []
    for attempt in attempts:
        try:
            refundable = gateway.refundable_minor(payment_intent=attempt.stripe_payment_intent)
        except gateway.GatewayError as exc:
            raise Conflict(
                f"Stripe cannot say now what is refundable on invoice {invoice.number}: try "
                "again in a moment, or credit without a refund.",
                code="stripe_unavailable",
            ) from exc
        charges.append(Charge(attempt.pk, refundable))
    return charges


# --- in the credit note's transaction -------------------------------------------------------


def _refunded_minor(attempt_ids: list[int]) -> dict[int, int]:
    rows = (
        Refund.objects.filter(attempt_id__in=attempt_ids, status__in=LIVE)
        .values("attempt_id")
        .annotate(total=Sum("amount_minor"))
    )
    return {row["attempt_id"]: row["total"] for row in rows}


def _disputed(attempt_ids: list[int]) -> dict[int, Dispute]:
    """The charges that cannot be refunded now: a card dispute is open on them and Stripe does
    not say the charge is still refundable (an inquiry usually is; a chargeback is not, and a
    refund beside it would give the money back twice)."""
    rows = Dispute.objects.filter(attempt_id__in=attempt_ids, is_charge_refundable=False).exclude(
        status__in=DISPUTE_CLOSED
    )
    return {row.attempt_id: row for row in rows}


def refunds_create(
    *, note: Invoice, amount_minor: int, charges: list[Charge], at: datetime
) -> list[Refund]:
    """Record the refunds of a credit note, latest charge first, in the caller's transaction
    (which holds the credited invoice's lock); they are sent after it commits.

    Each charge gives at most the smaller of what Stripe says is still refundable on it and
    what we charged on it less our earlier refunds; nothing while a card dispute is open on it
    (unless Stripe says it is still refundable). Raises RefundTooLarge, in words, when the
    charges cannot give `amount_minor` back (ChargeDisputed when a dispute is why)."""
    invoice = note.credited_invoice
    assert invoice is not None  # a credit note always names its invoice
    attempts = PaymentAttempt.objects.in_bulk([c.attempt_id for c in charges])
    refunded = _refunded_minor(list(attempts))
    disputed = _disputed(list(attempts))
    plan: list[tuple[PaymentAttempt, int]] = []
    left = amount_minor
    ours_total = stripe_total = 0
    for charge in charges:
        attempt = attempts[charge.attempt_id]
        ours = attempt.amount_minor - refunded.get(attempt.pk, 0)
        if attempt.pk in disputed:
            ours = 0  # nothing of a disputed charge goes back while its dispute is open
        ours_total += max(ours, 0)
        stripe_total += charge.stripe_refundable_minor
        take = min(left, ours, charge.stripe_refundable_minor)
        if take > 0:
            plan.append((attempt, take))
            left -= take
    if left > 0:
        most = sum(take for _, take in plan)
        money = format_money(most, invoice.currency)
        if disputed:
            dispute = next(iter(disputed.values()))
            why = f"reason {dispute.reason}, " if dispute.reason else ""
            raise ChargeDisputed(
                f"The card's bank disputes the charge of invoice {invoice.number} (Stripe "
                f"dispute {dispute.stripe_dispute_id}, {why}{dispute.get_status_display()}): "
                "it cannot be refunded while the dispute is open, as Stripe does not allow it. "
                f"At most {money} can go back to the card now; credit the rest as account "
                "credit, or wait for the dispute's outcome.",
                details={
                    "refund_minor": amount_minor,
                    "most": most,
                    "dispute": {
                        "id": dispute.stripe_dispute_id,
                        "reason": dispute.reason,
                        "status": dispute.status,
                    },
                },
            )
        raise RefundTooLarge(
            f"At most {money} of invoice {invoice.number} can go back to the card: we charged "
            f"{format_money(ours_total, invoice.currency)} by card on it less earlier refunds, "
            f"and Stripe says {format_money(stripe_total, invoice.currency)} is still "
            "refundable. Refund less; the rest of the credit becomes account credit.",
            details={"refund_minor": amount_minor, "most": most},
        )
    refunds = []
    for attempt, take in plan:
        refund = Refund.objects.create(
            credit_note=note,
            attempt=attempt,
            amount_minor=take,
            currency=note.currency,
            idempotency_key=f"refund-{note.pk}-{attempt.pk}",
            created_at=at,
        )
        audit_record(
            action="refund.created",
            obj=refund,
            after=R.CREATED,
            reason=f"{format_money(take, note.currency)} of {note.number} back to the card",
            at=at,
            account_id=note.account_id,
            label=f"{note.number} refund",
        )
        refunds.append(refund)
    ids = [refund.pk for refund in refunds]
    # After the commit, never inside it: Stripe is called only once the row is durable. A
    # process that dies before this runs leaves `created` rows the sweep sends.
    transaction.on_commit(lambda: _send_after_commit(ids, at))
    return refunds


def _send_after_commit(ids: list[int], at: datetime) -> None:
    # What follows is Stripe's answer, recorded by the system whoever asked for the refund
    # (their request is named on `refund.created`), as the sweep and webhooks record it.
    with acting_as(source=Source.SYSTEM):
        for refund_id in ids:
            refund_send(refund_id=refund_id, at=at)


# --- sending --------------------------------------------------------------------------------


def _claim(refund_id: int) -> bool:
    """created → sending, by one caller only (the row count says who won)."""
    return bool(
        Refund.objects.filter(pk=refund_id, status=R.CREATED).update(
            status=R.SENDING, sending_at=timezone.now()
        )
    )


def refund_send(*, refund_id: int, at: datetime | None = None) -> bool:
    """Send a recorded refund to Stripe if this caller claims it; False when another caller
    has it (or had it): nothing is sent twice."""
    at = at or timezone.now()
    if not _claim(refund_id):
        return False
    refund = Refund.objects.select_related("credit_note__credited_invoice", "attempt").get(
        pk=refund_id
    )
    _apply(refund, _call(refund), at)
    return True


def _call(refund: Refund) -> gateway.RefundResult:
    """The Stripe call of a refund: the same body every time, so that Stripe's idempotency
    replays the first answer instead of refunding again."""
    invoice = refund.credit_note.credited_invoice
    return gateway.refund_create(
        payment_intent=refund.attempt.stripe_payment_intent,
        amount_minor=refund.amount_minor,
        idempotency_key=refund.idempotency_key,
        metadata={
            "refund": str(refund.pk),
            "invoice": (invoice.number if invoice else "") or "",
            "credit_note": refund.credit_note.number or "",
        },
    )


# --- outcomes -------------------------------------------------------------------------------


def card_words(refund: Refund) -> str:
    """ "Visa •••• 4242", the card the charge was made to ("the card" when it is gone)."""
    method = PaymentMethod.objects.filter(stripe_id=refund.attempt.payment_method).first()
    return str(method) if method is not None and method.last4 else "the card"


def _apply(refund: Refund, result: gateway.RefundResult, at: datetime) -> None:
    """Record a refund's answer once; a failure (or a cancellation) becomes account credit."""
    with transaction.atomic():
        row = (
            Refund.objects.select_for_update(of=("self",))
            .select_related("credit_note__account", "credit_note__credited_invoice", "attempt")
            .get(pk=refund.pk)
        )
        status = result.status
        if status == row.status or status not in FOLLOWS[row.status]:
            # A replayed webhook, a late answer after a later one: nothing changes. A stripe id
            # learnt on the way is still kept (it makes the next lookup direct).
            if result.refund and not row.stripe_refund_id:
                Refund.objects.filter(pk=row.pk).update(stripe_refund_id=result.refund)
            return
        note = row.credit_note
        audit_record(
            action="refund.status",
            obj=row,
            before=row.status,
            after=status,
            reason=result.failure_reason,
            at=at,
            account_id=note.account_id,
            label=f"{note.number} refund",
        )
        row.status = status
        row.stripe_refund_id = result.refund or row.stripe_refund_id
        row.failure_reason = result.failure_reason[:300]
        row.completed_at = at if status in (R.SUCCEEDED, *RETURNED) else None
        row.save()
        invoice = note.credited_invoice
        if invoice is not None and status in (R.SUCCEEDED, *RETURNED):
            # Partners learn where the money went in this transaction: never told of a refund
            # that was not recorded, nor a recorded one left untold.
            outbox.invoice_refund_emit(invoice, refund=row)
        if status == R.SUCCEEDED:
            notifications.send(
                "refund_succeeded",
                note.account,
                invoice=invoice,
                refund=row,
                card=card_words(row),
                # The note's part that stayed account credit (when there is one).
                account_credit_minor=-note.total_minor - note_refund_minor(note=note),
            )
        elif status in RETURNED:
            _returned(row, at)


def note_refund_minor(*, note: Invoice) -> int:
    """What of a credit note goes (or went) back to the card: its refunds that did not fail."""
    return (
        Refund.objects.filter(credit_note=note)
        .exclude(status__in=RETURNED)
        .aggregate(total=Sum("amount_minor"))["total"]
        or 0
    )


def _returned(refund: Refund, at: datetime) -> None:
    """A refund that gave nothing back: its amount becomes account credit from the same credit
    note (taken off the next invoices), and operators are told (an audit row, the console's
    attention queue, the site's admins)."""
    note = refund.credit_note
    money = format_money(refund.amount_minor, refund.currency)
    credit = AccountCredit.objects.create(
        account_id=note.account_id,
        currency=refund.currency,
        amount_minor=refund.amount_minor,
        remaining_minor=refund.amount_minor,
        source=note,
        description=f"Refund to the card failed: {note.description}"[:300],
        created_at=at,
    )
    reason = f"{money} of {note.number} did not reach the card ({refund.failure_reason})"
    audit_record(
        action="refund.credited",
        obj=credit,
        after={"account_credit": refund.amount_minor, "refund": refund.idempotency_key},
        reason=reason,
        at=at,
        account_id=note.account_id,
        label=f"{note.number} refund",
    )
    logger.error("refund %s failed: %s; made account credit", refund.idempotency_key, reason)
    transaction.on_commit(
        lambda: mail_admins(
            f"Refund of {note.number} failed",
            f"{reason}. It is the account's credit now; the console lists it.",
        )
    )


# --- webhooks and lost answers --------------------------------------------------------------


def refund_changed(*, stripe_refund: str, refund_row: str = "", at: datetime | None = None) -> bool:
    """A webhook said a refund changed: apply what Stripe says it is now (converges whatever
    the order or number of deliveries). Raises GatewayError when Stripe cannot say, so the
    stored event is processed again later."""
    at = at or timezone.now()
    refund = Refund.objects.filter(stripe_refund_id=stripe_refund).first()
    if refund is None and refund_row.isdigit():
        refund = Refund.objects.filter(pk=int(refund_row)).first()
    if refund is None:
        return False  # not made through the portal (the ledger comparison reports those)
    result = gateway.refund_get(refund=stripe_refund)
    if result.status == R.UNKNOWN:
        raise gateway.GatewayError(f"Stripe did not say what refund {stripe_refund} is now.")
    _apply(refund, result, at)
    return True


def refunds_reconcile(*, as_of: datetime) -> int:
    """Settle refunds left without an answer, as attempts_reconcile does for charges: a claim
    is taken for lost only when it is five minutes old by the wall clock (never by `as_of`);
    a refund never claimed may go as soon as `as_of` allows."""
    timeout = IN_FLIGHT_TIMEOUT
    now = timezone.now()
    never_claimed = Q(status=R.CREATED, created_at__lte=as_of - timeout)
    unanswered = Q(status__in=(R.SENDING, R.UNKNOWN)) & (
        Q(sending_at__lte=now - timeout) | Q(sending_at__isnull=True, created_at__lte=now - timeout)
    )
    settled = 0
    for refund in Refund.objects.filter(never_claimed | unanswered).select_related(
        "credit_note__credited_invoice", "attempt"
    ):
        settled += _reconcile(refund, as_of)
    return settled


def _reconcile(refund: Refund, at: datetime) -> int:
    """Ask Stripe what became of a refund; never refund again blindly.

    Never claimed: sent now, once. Claimed but unanswered: re-claimed (a conditional update on
    the old claim time, so two sweeps cannot both do it), then looked up: by its id if Stripe
    gave one, else among the charge's refunds by our row id in their metadata. Only when
    Stripe holds none is it sent again, with the same key and body."""
    if refund.status == R.CREATED:
        return int(refund_send(refund_id=refund.pk, at=at))
    reclaimed = Refund.objects.filter(
        pk=refund.pk, status=refund.status, sending_at=refund.sending_at
    ).update(status=R.SENDING, sending_at=timezone.now())
    if not reclaimed:
        return 0
    refund.status = R.SENDING
    result: gateway.RefundResult | None
    if refund.stripe_refund_id:
        result = gateway.refund_get(refund=refund.stripe_refund_id)
    else:
        try:
            result = gateway.refund_find(
                payment_intent=refund.attempt.stripe_payment_intent, refund_row=str(refund.pk)
            )
        except gateway.GatewayError as exc:
            logger.warning("refund %s: %s", refund.idempotency_key, exc)
            result = gateway.RefundResult("unknown")
        if result is None:  # Stripe holds no refund of ours: it was never made
            result = _call(refund)
    _apply(refund, result, at)
    return int(result.status != R.UNKNOWN)
