"""Card disputes (chargebacks): the card's bank takes a charge's money back until Stripe decides.

Every `charge.dispute.*` webhook (created, updated, closed, funds_withdrawn, funds_reinstated)
only names the dispute: processing reads it back from Stripe (gateway.dispute_get), as refunds
do, and writes what Stripe holds now onto our one row per dispute. A replay finds nothing
changed and writes nothing; a late `created` after the `closed` reads the closed dispute; so
whatever the order or number of deliveries, the row ends as Stripe's latest state.

What follows from a dispute, once, when its row changes:
- opened: partners get `invoice.dispute_opened`; refunds of the charge are refused while it is
  open unless Stripe says the charge is still refundable (billing.refunds);
- lost: the invoice moves `paid → disputed_lost`: owed again (the statement counts the charge
  less the disputed amount), never charged again by the schedules (collection only takes
  unpaid statuses), and waits for an operator's decision (console: another card, suspend,
  write off); the fee is on the row; the site's admins are told;
- won (or an inquiry closed): nothing is owed; an invoice that had been moved to
  `disputed_lost` (never by Stripe's own order of events, but by a replayed state) is paid again;
- closed either way: partners get `invoice.dispute_closed`.
"""

import logging
from datetime import datetime
from typing import Any

from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from outbox import services as outbox
from plans.money import format_money

from . import gateway, invoicing
from .models import (
    DISPUTE_CLOSED,
    AttemptStatus,
    Dispute,
    DisputeStatus,
    Invoice,
    InvoiceStatus,
    PaymentAttempt,
)

logger = logging.getLogger(__name__)

S = InvoiceStatus
# The fields a webhook may change: what is compared (a replay changes none) and audited.
TRACKED = (
    "status",
    "reason",
    "amount_minor",
    "currency",
    "fee_minor",
    "evidence_due_by",
    "is_charge_refundable",
    "funds_withdrawn_at",
    "funds_reinstated_at",
)


def dispute_changed(*, stripe_dispute: str, at: datetime | None = None) -> bool:
    """A webhook said a dispute changed: write what Stripe says it is now. False when it is
    not a dispute of one of our charges. Raises GatewayError when Stripe cannot say, so the
    stored event is processed again later."""
    at = at or timezone.now()
    state = gateway.dispute_get(dispute=stripe_dispute)
    if state.status not in DisputeStatus.values:
        raise gateway.GatewayError(f"Stripe gave dispute {stripe_dispute} an unknown status.")
    attempt = (
        PaymentAttempt.objects.filter(
            stripe_payment_intent=state.payment_intent, status=AttemptStatus.SUCCEEDED
        )
        .select_related("invoice")
        .first()
        if state.payment_intent
        else None
    )
    if attempt is None:
        return False  # a charge not made through the portal (the ledger comparison sees it)
    dispute_apply(attempt=attempt, state=state, at=at)
    return True


def _fields(state: gateway.DisputeState) -> dict[str, Any]:
    return {
        "status": state.status,
        "reason": state.reason,
        "amount_minor": state.amount_minor,
        "currency": state.currency,
        "fee_minor": state.fee_minor,
        "evidence_due_by": state.evidence_due_by,
        "is_charge_refundable": state.is_charge_refundable,
        "funds_withdrawn_at": state.funds_withdrawn_at,
        "funds_reinstated_at": state.funds_reinstated_at,
    }


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def dispute_apply(
    *, attempt: PaymentAttempt, state: gateway.DisputeState, at: datetime
) -> Dispute | None:
    """Write Stripe's state of a dispute of `attempt` onto its row (created on first sight);
    None when nothing changed (a replay). One transaction with the row locked, so two
    deliveries processed at once write it once each, in turn, and the second sees the first."""
    fields = _fields(state)
    invoice = attempt.invoice
    with transaction.atomic():
        # The invoice first, then the dispute: the order the console's decision takes too.
        Invoice.objects.select_for_update().filter(pk=invoice.pk).first()
        Dispute.objects.bulk_create(
            [
                Dispute(
                    attempt=attempt,
                    invoice=invoice,
                    stripe_dispute_id=state.dispute,
                    # Not the state yet: an empty row the update below fills and audits.
                    status=DisputeStatus.NEEDS_RESPONSE,
                    amount_minor=0,
                    currency=state.currency,
                    created_at=state.created_at or at,
                    updated_at=at,
                )
            ],
            ignore_conflicts=True,
        )
        row = Dispute.objects.select_for_update().get(stripe_dispute_id=state.dispute)
        # Inserted just now, in this transaction: Stripe's payload is never empty.
        is_new = not row.payload
        changed = {
            name: value for name, value in fields.items() if is_new or getattr(row, name) != value
        }
        if not changed:
            return None  # a replay, or an event older than what we hold: nothing moves
        was_open, was_lost = (True, False) if is_new else (row.is_open, row.status == "lost")
        audit_record(
            action="dispute.created" if is_new else "dispute.changed",
            obj=row,
            before=None if is_new else {k: _plain(getattr(row, k)) for k in changed},
            after={k: _plain(v) for k, v in changed.items()},
            reason=f"Stripe: {state.reason or 'dispute'} on {invoice.number}",
            at=at,
            account_id=invoice.account_id,
            label=f"{invoice.number} dispute",
        )
        for name, value in changed.items():
            setattr(row, name, value)
        row.payload = state.raw
        row.updated_at = at
        if row.status in DISPUTE_CLOSED and row.closed_at is None:
            row.closed_at = at
        row.save()
        if is_new:
            outbox.invoice_dispute_emit(row.invoice, dispute=row, opened=True)
        # The invoice moves first: partners read its status after the dispute in the event.
        if row.status == DisputeStatus.LOST and not was_lost:
            _lost(row, at)
        elif was_lost and row.status != DisputeStatus.LOST:
            _reversed(row, at)
        if was_open and not row.is_open:
            outbox.invoice_dispute_emit(row.invoice, dispute=row, opened=False)
    return row


def _lost(dispute: Dispute, at: datetime) -> None:
    """The bank keeps the money: the invoice is owed again and an operator decides."""
    invoice = dispute.invoice
    money = format_money(dispute.amount_minor, dispute.currency)
    if invoice.status == S.PAID:
        invoicing.invoice_transition(
            invoice=invoice,
            to=S.DISPUTED_LOST,
            reason=f"card dispute {dispute.stripe_dispute_id} lost: {money} taken back",
            at=at,
        )
    fee = format_money(dispute.fee_minor, dispute.currency)
    logger.warning("dispute %s lost on %s", dispute.stripe_dispute_id, invoice.number)
    transaction.on_commit(
        lambda: mail_admins(
            f"Card dispute on {invoice.number} lost",
            f"The card's bank kept {money} of invoice {invoice.number} (Stripe's fee: {fee}). "
            "The invoice is owed again and is not charged automatically: decide in the "
            "console's Disputes page (ask for another card, suspend, or write off).",
        )
    )


def _reversed(dispute: Dispute, at: datetime) -> None:
    invoice = dispute.invoice
    if invoice.status == S.DISPUTED_LOST:
        invoicing.invoice_settle(
            invoice=invoice, reason=f"card dispute {dispute.stripe_dispute_id} won", at=at
        )
