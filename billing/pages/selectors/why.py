"""The "Why was this billed?" page: one ticket's verdict per meter, each rule in words, and
what the merchant contested about it (billing.ticket_disputes); the Usage tab's list of
contested tickets."""

from dataclasses import dataclass
from datetime import datetime

from accounts.models import Account
from metering import selectors as metering
from metering.models import ChargeStatus, SubjectKind, UsageExclusion
from plans import meters

from ...models import TicketDispute, TicketDisputeStatus
from ...phrases import ticket_dispute_outcome_words
from ..rules_text import rule_words

# The Usage tab lists this many contested tickets, newest first (the API pages through all).
CONTESTED_SHOWN = 50


@dataclass(frozen=True)
class Verdict:
    meter: str
    counted: bool
    status: str
    billable_at: datetime | None
    pending_until: datetime | None
    period_start: datetime | None
    rules: list[tuple[str, str]]  # (id, words)
    excluded: bool = False  # counted by the rules, then excluded after a dispute
    held: bool = False  # counted by the rules, held for review (billing.spike_guard)


def ticket_explanation(*, account: Account, ticket: str) -> list[Verdict]:
    """Why one ticket was (or was not) billed, per meter, with each rule in words."""
    labels = meters.LABELS
    return [
        Verdict(
            meter=labels.get(charge.meter, charge.meter),
            counted=charge.status in (ChargeStatus.FINAL, ChargeStatus.PENDING),
            status=charge.get_status_display(),
            billable_at=charge.billable_at,
            pending_until=charge.pending_until,
            period_start=charge.period_start,
            rules=[(rule, rule_words(rule)) for rule in charge.rules],
            excluded=charge.status == ChargeStatus.EXCLUDED,
            held=charge.status == ChargeStatus.HELD,
        )
        for charge in metering.ticket_billing(account=account, ticket=ticket)
    ]


@dataclass(frozen=True)
class DisputeRow:
    """One contested ticket as the merchant reads it."""

    pk: int
    ticket: str
    reason: str  # the reason's label: "auto-reply loop"
    comment: str
    status: str  # open | accepted | rejected
    status_words: str  # "waiting for a decision", "accepted", "rejected"
    # The decision's words where they add to the outcome: why it was rejected, or what proved
    # it automatically; an operator's acceptance says no more than the outcome.
    decision: str
    outcome: str  # phrases.ticket_dispute_outcome_words
    filed_at: datetime
    decided_at: datetime | None


def _row(dispute: TicketDispute) -> DisputeRow:
    return DisputeRow(
        pk=dispute.pk,
        ticket=dispute.ticket,
        reason=dispute.get_reason_display(),
        comment=dispute.comment,
        status=dispute.status,
        status_words=dispute.get_status_display(),
        decision=dispute.decision
        if dispute.status == TicketDisputeStatus.REJECTED or dispute.decided_by == "automatically"
        else "",
        outcome=ticket_dispute_outcome_words(dispute),
        filed_at=dispute.created_at,
        decided_at=dispute.resolved_at,
    )


@dataclass(frozen=True)
class TicketContest:
    """What the Why page offers about contesting one ticket."""

    billed: bool  # a unit of it is counted (final or pending): there is something to contest
    excluded_reason: str  # taken out of billing after a dispute: the reason, else ""
    disputes: list[DisputeRow]  # newest first

    @property
    def waiting(self) -> bool:
        return any(d.status == TicketDisputeStatus.OPEN for d in self.disputes)

    @property
    def can_contest(self) -> bool:
        # The window (30 days after its invoice) is the service's to check: refused in words.
        return self.billed and not self.waiting and not self.excluded_reason


def ticket_contest(*, account: Account, ticket: str, verdicts: list[Verdict]) -> TicketContest:
    exclusion = UsageExclusion.objects.filter(
        account=account, subject_kind=SubjectKind.TICKET, subject=ticket
    ).first()
    disputes = TicketDispute.objects.filter(account=account, ticket=ticket).select_related(
        "credit_note"
    )
    return TicketContest(
        billed=any(v.counted for v in verdicts),
        excluded_reason=exclusion.reason if exclusion else "",
        disputes=[_row(d) for d in disputes],
    )


def contested_tickets(*, account: Account, limit: int = CONTESTED_SHOWN) -> list[DisputeRow]:
    """The account's contested tickets, newest first (the Usage tab's card)."""
    disputes = TicketDispute.objects.filter(account=account).select_related("credit_note")
    return [_row(d) for d in disputes.order_by("-created_at", "-pk")[:limit]]
