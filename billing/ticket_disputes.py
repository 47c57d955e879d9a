"""Merchants contesting a billed ticket: one open dispute per ticket, decided automatically
when the event stream proves it, or by an operator; accepted, the ticket is excluded from
billing, and credited when its period was invoiced and it made money.

The money, for a ticket accepted after its period's close (docs/billing-page.md): the period's
invoice billed `billed` units of the meter (UsageClose.billed_units); without the ticket the
period counts `left`. What was invoiced for units the period no longer has is given back by a
credit note, overage(billed) − overage(min(billed, left)), on that period's terms, and
`billed_units` follows, so the next close's late usage (F6) neither bills nor credits it again.
Within the allowance, or inside an overage block that still has other units, that is zero: the
merchant's allowance is restored and no charge changes. A ticket that became billable after
the close (late usage not invoiced yet) is simply not billed on the next invoice.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from accounts.errors import Conflict, DomainError, NotFound
from accounts.models import Account
from audit.services import audit_record, current_actor
from metering import services as metering
from metering.models import Charge, ChargeStatus, Event, SubjectKind, TicketMerge
from metering.rules import types as rule_types
from outbox import services as outbox
from plans import periods, pricing
from plans.models import Subscription
from plans.money import format_money
from plans.terms import subscription_terms

from . import invoicing, notifications
from .models import (
    Invoice,
    TicketDispute,
    TicketDisputeOutcome,
    TicketDisputeReason,
    TicketDisputeStatus,
    UsageClose,
)

# How long after its invoice a ticket may be contested (within the open period: always).
CONTEST_WINDOW = timedelta(days=30)
# A bulk dispute names at most this many tickets: a wave larger than this is an operator's.
BULK_MOST = 1000
COMMENT_MOST = 1000
# Held units (the spike guard) are contested like billed ones: they will be, once released.
_BILLED = (ChargeStatus.FINAL, ChargeStatus.PENDING, ChargeStatus.HELD)


# --- filing ---------------------------------------------------------------------------------


def ticket_dispute_open(
    *, account: Account, ticket: str, reason: str, comment: str = "", at: datetime | None = None
) -> TicketDispute:
    """Contest one billed ticket. Refused, in words, when the ticket was not billed, is
    already excluded or contested, or its invoice is more than 30 days old. Accepted at once
    when the event stream proves it (`_proof`); otherwise it waits in the operators' queue."""
    at = at or timezone.now()
    ticket, reason, comment = _clean(ticket, reason, comment)
    refusal = _refusal(account, ticket, at)
    if refusal:
        raise refusal
    dispute = _file(account, ticket, reason, comment, at)
    proof = _proof(account, ticket, reason)
    if proof:
        dispute = ticket_dispute_accept(dispute=dispute, decision=proof, at=at, automatic=True)
    return dispute


def ticket_dispute_from_hold(
    *, account: Account, ticket: str, reason: str, comment: str, at: datetime
) -> TicketDispute:
    """A held ticket excluded by the merchant or an operator (billing.spike_guard): recorded
    as a dispute accepted at once, so it reads, is told and is credited like any other."""
    ticket, reason, comment = _clean(ticket, reason, comment)
    dispute = TicketDispute.objects.filter(
        account=account, ticket=ticket, status=TicketDisputeStatus.OPEN
    ).first() or _file(account, ticket, reason, comment, at)
    return ticket_dispute_accept(dispute=dispute, decision=comment, at=at, notify=False)


@dataclass
class BulkResult:
    opened: list[TicketDispute] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (ticket, why in words)


def ticket_disputes_open_bulk(
    *,
    account: Account,
    reason: str,
    comment: str = "",
    requester: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    at: datetime | None = None,
) -> BulkResult:
    """Contest every billed ticket of one requester and/or billable within [start, end): a
    mail loop, a spam wave. Each ticket is filed as if alone (and may be accepted at once);
    those that cannot be are listed with why, and never stop the others."""
    at = at or timezone.now()
    requester = " ".join(requester.split())
    if not requester and not (start and end):
        raise DomainError(
            "Name a requester, or a time range (from and to), to contest tickets in bulk.",
            details={"field": "requester"},
        )
    if start and end and not start < end:
        raise DomainError("The range's end comes after its start.", details={"field": "end"})
    _, reason, comment = _clean("bulk", reason, comment)
    tickets = _tickets_matching(account, requester, start, end)
    if not tickets:
        raise NotFound("No billed ticket matches: nothing to contest.", code="not_billed")
    if len(tickets) > BULK_MOST:
        raise Conflict(
            f"{len(tickets):,} tickets match; a bulk dispute takes at most {BULK_MOST:,}. "
            "Narrow the range, or ask us: a wave this large is one we look at with you.",
            code="too_many",
            details={"matching": len(tickets), "most": BULK_MOST},
        )
    result = BulkResult()
    for ticket in tickets:
        try:
            result.opened.append(
                ticket_dispute_open(
                    account=account, ticket=ticket, reason=reason, comment=comment, at=at
                )
            )
        except DomainError as refusal:
            result.skipped.append((ticket, str(refusal)))
    return result


def _clean(ticket: str, reason: str, comment: str) -> tuple[str, str, str]:
    ticket = (ticket or "").strip()
    if not ticket or len(ticket) > 255:
        raise DomainError("Name the ticket (its helpdesk id).", details={"field": "ticket"})
    if reason not in TicketDisputeReason.values:
        raise DomainError(
            "Choose why the ticket should not have been billed: "
            + ", ".join(f"{value} ({label})" for value, label in TicketDisputeReason.choices)
            + ".",
            details={"field": "reason"},
        )
    comment = " ".join((comment or "").split())
    if len(comment) > COMMENT_MOST:
        raise DomainError(
            f"The comment takes at most {COMMENT_MOST} characters.", details={"field": "comment"}
        )
    if reason == TicketDisputeReason.OTHER and not comment:
        raise DomainError(
            "Say in the comment why the ticket should not have been billed.",
            details={"field": "comment"},
        )
    return ticket, reason, comment


def _tickets_matching(
    account: Account, requester: str, start: datetime | None, end: datetime | None
) -> list[str]:
    charges = Charge.objects.filter(
        account=account, subject_kind=SubjectKind.TICKET, status__in=_BILLED
    )
    if start and end:
        charges = charges.filter(billable_at__gte=start, billable_at__lt=end)
    if requester:
        asked = Event.objects.filter(
            account=account, customer=requester, ticket__isnull=False
        ).values("ticket")
        charges = charges.filter(subject__in=asked)
    return sorted(set(charges.values_list("subject", flat=True)))


def _refusal(account: Account, ticket: str, at: datetime) -> DomainError | None:
    """Why this ticket cannot be contested now, or None."""
    charges = list(
        Charge.objects.filter(account=account, subject_kind=SubjectKind.TICKET, subject=ticket)
    )
    if any(c.status == ChargeStatus.EXCLUDED for c in charges):
        return Conflict(
            f"Ticket {ticket} is already excluded from billing.", code="already_excluded"
        )
    billed = [c for c in charges if c.status in _BILLED]
    if not billed:
        return NotFound(
            f"Ticket {ticket} was not billed: there is nothing to contest.", code="not_billed"
        )
    if TicketDispute.objects.filter(
        account=account, ticket=ticket, status=TicketDisputeStatus.OPEN
    ).exists():
        return Conflict(
            f"Ticket {ticket} is already contested: we are looking at it.", code="already_open"
        )
    latest = max(c.period_start for c in billed if c.period_start)
    invoice = _period_invoice(account, latest)
    if invoice and invoice.issued_at and at > invoice.issued_at + CONTEST_WINDOW:
        return Conflict(
            f"Ticket {ticket} was invoiced on {invoice.number}, issued "
            f"{invoice.issued_at:%-d %b %Y}: a ticket can be contested within "
            f"{CONTEST_WINDOW.days} days of its invoice.",
            code="too_late",
        )
    return None


def _period_invoice(account: Account, period_start: datetime) -> Invoice | None:
    close = (
        UsageClose.objects.filter(subscription__account=account, period_start=period_start)
        .select_related("invoice")
        .first()
    )
    return close.invoice if close else None


def _file(account: Account, ticket: str, reason: str, comment: str, at: datetime):
    actor = current_actor()
    try:
        with transaction.atomic():
            dispute = TicketDispute.objects.create(
                account=account,
                ticket=ticket,
                reason=reason,
                comment=comment,
                filed_by=actor.label or actor.source,
                created_at=at,
            )
            audit_record(
                action="ticket_dispute.opened",
                obj=dispute,
                after={"ticket": ticket, "reason": reason, "comment": comment},
                reason=comment or dispute.get_reason_display(),
                at=at,
                label=f"ticket {ticket}",
            )
            outbox.usage_dispute_emit(dispute, created=True)
    except IntegrityError:  # two tabs at once: the partial unique index keeps one
        raise Conflict(
            f"Ticket {ticket} is already contested: we are looking at it.", code="already_open"
        ) from None
    return dispute


def _proof(account: Account, ticket: str, reason: str) -> str:
    """What in the helpdesk's own events proves the dispute, in words, or "": a ticket merged
    into another (duplicate), a ticket the helpdesk flagged as spam (spam)."""
    if reason == TicketDisputeReason.DUPLICATE:
        merge = (
            TicketMerge.objects.filter(account=account, source=ticket).order_by("merged_at").first()
        )
        if merge:
            return (
                f"The helpdesk merged ticket {ticket} into {merge.into} on "
                f"{merge.merged_at:%-d %b %Y}: accepted automatically."
            )
    if reason == TicketDisputeReason.SPAM:
        for occurred_at, attrs in (
            Event.objects.filter(account=account, ticket=ticket, type=rule_types.TICKET_UPDATED)
            .order_by("occurred_at")
            .values_list("occurred_at", "attrs")
        ):
            changes = (attrs or {}).get("changes")
            if isinstance(changes, dict) and changes.get("spam") is True:
                return (
                    f"The helpdesk flagged ticket {ticket} as spam on "
                    f"{occurred_at:%-d %b %Y}: accepted automatically."
                )
    return ""


def ticket_disputes_auto_resolve(*, at: datetime | None = None) -> int:
    """Periodic: accept the open disputes whose proof arrived after they were filed (the
    helpdesk merged the ticket or flagged it as spam later). Returns how many."""
    at = at or timezone.now()
    accepted = 0
    waiting = TicketDispute.objects.filter(
        status=TicketDisputeStatus.OPEN,
        reason__in=[TicketDisputeReason.DUPLICATE, TicketDisputeReason.SPAM],
    ).select_related("account")
    for dispute in waiting:
        proof = _proof(dispute.account, dispute.ticket, dispute.reason)
        if not proof:
            continue
        try:
            ticket_dispute_accept(dispute=dispute, decision=proof, at=at, automatic=True)
            accepted += 1
        except Conflict:  # decided meanwhile, or its invoice's payment is in flight: next time
            continue
    return accepted


# --- deciding -------------------------------------------------------------------------------


def ticket_dispute_reject(
    *, dispute: TicketDispute, decision: str, at: datetime | None = None
) -> TicketDispute:
    """An operator refuses: the ticket stays billed; `decision` is shown to the merchant."""
    at = at or timezone.now()
    decision = " ".join((decision or "").split())
    if not decision:
        raise DomainError(
            "Say why, in words the merchant will read.", details={"field": "decision"}
        )
    with transaction.atomic():
        dispute = _locked_open(dispute)
        dispute.status = TicketDisputeStatus.REJECTED
        dispute.decision = decision[:1000]
        dispute.decided_by = _actor_label()
        dispute.resolved_at = at
        dispute.save()
        _decided(dispute, at)
    return dispute


def ticket_dispute_accept(
    *,
    dispute: TicketDispute,
    decision: str = "",
    at: datetime | None = None,
    automatic: bool = False,
    notify: bool = True,
) -> TicketDispute:
    """Exclude the ticket from billing. Before its period's close the period is simply rated
    without it; after, what its units made on the invoice is given back by a credit note
    (module docstring), which is often nothing: the allowance is restored."""
    at = at or timezone.now()
    with transaction.atomic():
        dispute = _locked_open(dispute)
        account = dispute.account
        # The live subscription's lock: its close is the one writer of billed_units.
        live = list(
            Subscription.objects.select_for_update().filter(account=account, ended_at__isnull=True)
        )
        before = _final_units(account, dispute.ticket)
        metering.tickets_exclude(
            account_id=account.pk,
            tickets=[dispute.ticket],
            reason=f"{dispute.get_reason_display()}: {dispute.comment}".strip(": "),
            at=at,
        )
        credited, note, closed = _give_back(dispute, before, live, at)
        if credited:
            dispute.outcome = TicketDisputeOutcome.CREDITED
        elif closed:
            dispute.outcome = TicketDisputeOutcome.ALLOWANCE_RESTORED
        else:
            dispute.outcome = TicketDisputeOutcome.EXCLUDED
        dispute.status = TicketDisputeStatus.ACCEPTED
        dispute.credit_note = note
        dispute.credited_minor = credited
        dispute.decision = (" ".join(decision.split()) or _outcome_words(dispute))[:1000]
        dispute.decided_by = "automatically" if automatic else _actor_label()
        dispute.resolved_at = at
        dispute.save()
        _decided(dispute, at, notify=notify)
    return dispute


def _locked_open(dispute: TicketDispute) -> TicketDispute:
    row = (
        TicketDispute.objects.select_for_update(of=("self",))
        .select_related("account")
        .get(pk=dispute.pk)
    )
    if row.status != TicketDisputeStatus.OPEN:
        raise Conflict(
            f"The dispute of ticket {row.ticket} was {row.status} already.", code="decided"
        )
    return row


def _actor_label() -> str:
    actor = current_actor()
    return actor.label or actor.source


def _decided(dispute: TicketDispute, at: datetime, *, notify: bool = True) -> None:
    audit_record(
        action=f"ticket_dispute.{dispute.status}",
        obj=dispute,
        before={"status": TicketDisputeStatus.OPEN},
        after={
            "status": dispute.status,
            "outcome": dispute.outcome,
            "credited": dispute.credited_minor,
            "credit_note": dispute.credit_note.number if dispute.credit_note else None,
        },
        reason=dispute.decision,
        at=at,
        label=f"ticket {dispute.ticket}",
    )
    outbox.usage_dispute_emit(dispute, created=False)
    if not notify:  # held units excluded in bulk (billing.spike_guard): told there, once
        return
    # Every decision is told, an automatic one too (the merchant learns it was accepted); the
    # email goes once the transaction commits (notifications.send).
    note = dispute.credit_note
    notifications.send(
        "ticket_dispute_decided",
        dispute.account,
        also=notifications.billing_managers(dispute.account),
        dispute=dispute,
        ticket=dispute.ticket,
        verdict="accepted" if dispute.status == TicketDisputeStatus.ACCEPTED else "still billed",
        automatic=dispute.decided_by == "automatically",
        credited_minor=abs(note.total_minor) if note is not None else 0,
    )


def _outcome_words(dispute: TicketDispute) -> str:
    if dispute.outcome == TicketDisputeOutcome.CREDITED:
        assert dispute.credit_note is not None
        return (
            f"Accepted: credit note {dispute.credit_note.number} gives back "
            f"{format_money(dispute.credited_minor, dispute.account.currency)} (before tax)."
        )
    if dispute.outcome == TicketDisputeOutcome.ALLOWANCE_RESTORED:
        return "Accepted: allowance restored, no charge change."
    return "Accepted: the ticket is not billed; this period is rated without it."


def _final_units(account: Account, ticket: str) -> dict[tuple[datetime, str], int]:
    """The ticket's final units per (usage period, meter), before it is excluded."""
    rows = (
        Charge.objects.filter(
            account=account,
            subject_kind=SubjectKind.TICKET,
            subject=ticket,
            status=ChargeStatus.FINAL,
        )
        .values_list("period_start", "meter")
        .annotate(n=Count("id"))
    )
    return {(start, meter): n for start, meter, n in rows}


def _give_back(
    dispute: TicketDispute,
    before: dict[tuple[datetime, str], int],
    live: list[Subscription],
    at: datetime,
) -> tuple[int, Invoice | None, bool]:
    """For each invoiced period the ticket had units in: lower `billed_units` to what the
    period still counts and credit what that lowers. Returns (credited before tax, the credit
    note, whether any period was closed)."""
    account = dispute.account
    by_period: dict[datetime, list[str]] = defaultdict(list)
    for start, meter in before:
        by_period[start].append(meter)
    closes = {
        c.period_start: c
        for c in UsageClose.objects.select_for_update(of=("self",))
        .select_related("invoice", "subscription")
        .filter(subscription__account=account, period_start__in=list(by_period))
    }
    credits: list[tuple[Invoice, int, str]] = []
    for start, meters in sorted(by_period.items()):
        close = closes.get(start)
        if close is None:
            continue  # the open period: it is rated without the ticket
        left = _counted_now(account, start)
        terms, _ = _terms_of(close, live)
        by_meter = {addon.meter: addon.usage for addon in terms.addons}
        if terms.plan is not None:
            by_meter[terms.plan.helpdesk.meter] = terms.plan.helpdesk
        amount = 0
        for meter in meters:
            billed = close.billed_units.get(meter, 0)
            if _deferred(close, meter) or meter not in by_meter:
                continue  # not invoiced yet (P4's cycle-end months), or a meter not paid for
            kept = min(billed, left.get(meter, 0))
            if kept == billed:
                continue
            line = pricing.late_usage_line(
                late=pricing.LateUsage(
                    period=pricing.Period(start=close.period_start, end=close.period_end),
                    terms=by_meter[meter],
                    billed_units=billed,
                    units=kept,
                )
            )
            amount += -line.amount_minor if line else 0
            close.billed_units[meter] = kept
        close.save(update_fields=["billed_units"])
        if amount:
            credits.append((close.invoice, amount, _period_words(close)))
    total, last_note = 0, None
    for invoice, amount, period in credits:
        last_note = invoicing.credit_note_issue(
            invoice=invoice,
            amount_minor=amount,
            description=(
                f"Ticket {dispute.ticket} contested ({dispute.get_reason_display()}) and "
                f"accepted: the overage it made, {period}."
            ),
            at=at,
        )
        total += amount
    return total, last_note, bool(closes)


def _counted_now(account: Account, start: datetime) -> dict[str, int]:
    rows = (
        Charge.objects.filter(account=account, period_start=start, status=ChargeStatus.FINAL)
        .values_list("meter")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def _terms_of(close: UsageClose, live: list[Subscription]):
    if close.terms:
        return pricing.terms_from_snapshot(close.terms)
    # Closes written before terms were kept were always priced on the subscription's terms.
    subscription = live[0] if live else close.subscription
    cycle = pricing.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    return subscription_terms(subscription), cycle


def _deferred(close: UsageClose, meter: str) -> bool:
    """P4: on an annual subscription Voice and SMS months are invoiced at the cycle's end, on
    that invoice, as counted then: a month not invoiced yet is rated without the ticket, and
    one already invoiced is corrected by the next close's usage correction (F5, F6)."""
    return close.subscription.interval == periods.YEAR and meter in pricing.DEFERRED_ON_ANNUAL


def _period_words(close: UsageClose) -> str:
    return f"usage period {close.period_start:%-d %b} – {close.period_end:%-d %b %Y}"
