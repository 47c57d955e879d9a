"""Merchants contest a billed ticket (billing.ticket_disputes): filed, decided automatically
when the event stream proves it, or by an operator; accepted before the close the period is
rated without it; after the close, a credit note only when it made money (P2's blocks of 100).
Times are fixed instants, never today's date."""

from datetime import timedelta

import pytest
import time_machine

from accounts.errors import Conflict, DomainError, NotFound
from billing import ticket_disputes
from billing.models import Invoice, TicketDispute, UsageClose
from metering.models import Charge
from outbox import services as outbox
from outbox.models import Event as OutboxEvent
from tests.billing.charges import counted
from tests.billing.pages_fixtures import T0, account  # noqa: F401
from tests.billing.test_cancel_at_period_end import END, billing_at
from tests.metering.helpers import ingest

HALF = T0 + timedelta(days=15)
AFTER_CLOSE = END + timedelta(days=4)
BASIC_BLOCK = 4000  # Basic: 300 tickets included, then $40 per block of 100 (P2)


def at(moment):
    return time_machine.travel(moment, tick=False)


def ticket_events(ticket: str, when, *, requester: str = "ana@example.com") -> list[dict]:
    """A customer's email answered by an agent: one billable helpdesk ticket (H1)."""
    return [
        {
            "id": f"{ticket}-c",
            "type": "message",
            "ticket": ticket,
            "occurred_at": when,
            "channel": "email",
            "author": "customer",
            "customer": requester,
        },
        {
            "id": f"{ticket}-a",
            "type": "message",
            "ticket": ticket,
            "occurred_at": when + timedelta(seconds=30),
            "channel": "email",
            "author": "agent",
            "customer": requester,
        },
    ]


def billed(shop, ticket: str, when=HALF, **kwargs) -> None:
    with at(when):
        ingest(shop, ticket_events(ticket, when, **kwargs), now=when)


def statuses(shop, ticket: str) -> set[str]:
    return set(Charge.objects.filter(account=shop, subject=ticket).values_list("status", flat=True))


def webhooks(shop) -> list[tuple[str, str]]:
    return [
        (e.type, e.data["status"])
        for e in OutboxEvent.objects.filter(
            account=shop, type__startswith="usage_dispute"
        ).order_by("pk")
    ]


def test_H1_a_contested_ticket_waits_for_an_operator_and_is_excluded_in_the_open_period(
    account,  # noqa: F811
    partner,
):
    outbox.endpoint_create(partner=partner, url="https://hooks.example/in")
    billed(account, "T-1")
    billed(account, "T-2")
    with at(HALF + timedelta(hours=1)):
        dispute = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-1", reason="test", comment="Our QA's test ticket"
        )
    assert dispute.status == "open" and dispute.outcome == ""
    assert statuses(account, "T-1") == {"final"}  # billed until someone decides
    with at(HALF + timedelta(hours=2)):
        dispute = ticket_disputes.ticket_dispute_accept(dispute=dispute)
    assert dispute.status == "accepted" and dispute.outcome == "excluded"
    assert (
        dispute.decision == "Accepted: the ticket is not billed; this period is rated without it."
    )
    assert dispute.credit_note is None and dispute.credited_minor == 0
    assert statuses(account, "T-1") == {"excluded"} and statuses(account, "T-2") == {"final"}
    # Kept on every later re-evaluation: a late event on the ticket does not bring it back.
    billed(account, "T-1", when=HALF + timedelta(days=1))
    assert statuses(account, "T-1") == {"excluded"}
    assert webhooks(account) == [
        ("usage_dispute.created", "open"),
        ("usage_dispute.resolved", "accepted"),
    ]


def test_P2_accepted_after_the_close_a_ticket_that_made_a_block_is_credited(
    account,  # noqa: F811
):
    counted(account, "helpdesk_tickets", 300, T0 + timedelta(days=3))
    billed(account, "T-301")  # the 301st ticket: one block of overage (4,000)
    billing_at(END)
    [close] = Invoice.objects.filter(account=account, reason="period_close")
    assert any(
        line.kind == "overage" and line.amount_minor == BASIC_BLOCK for line in close.lines.all()
    )
    with at(AFTER_CLOSE):
        dispute = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-301", reason="auto_reply_loop", comment="Loop with a vendor"
        )
        dispute = ticket_disputes.ticket_dispute_accept(dispute=dispute)
    assert dispute.outcome == "credited" and dispute.credited_minor == BASIC_BLOCK
    note = dispute.credit_note
    assert note.kind == "credit_note" and note.credited_invoice_id == close.pk
    assert note.total_minor == -BASIC_BLOCK
    assert "Ticket T-301 contested (auto-reply loop) and accepted" in note.description
    assert (
        dispute.decision == f"Accepted: credit note {note.number} gives back $40.00 (before tax)."
    )
    usage_close = UsageClose.objects.get(invoice=close)
    assert usage_close.billed_units["helpdesk_tickets"] == 300
    # F6: the next close neither bills nor credits November again.
    billing_at(END + timedelta(days=31))
    [december] = Invoice.objects.filter(account=account, reason="period_close").exclude(pk=close.pk)
    assert not [line for line in december.lines.all() if line.kind in ("late_usage", "credit")]


def test_P2_accepted_after_the_close_inside_a_block_restores_the_allowance_without_money(
    account,  # noqa: F811
):
    counted(account, "helpdesk_tickets", 349, T0 + timedelta(days=3))
    billed(account, "T-350")  # 350: one block; 349 is still one block
    billing_at(END)
    with at(AFTER_CLOSE):
        dispute = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-350", reason="spam"
        )
        dispute = ticket_disputes.ticket_dispute_accept(dispute=dispute)
    assert dispute.outcome == "allowance_restored" and dispute.credit_note is None
    assert dispute.decision == "Accepted: allowance restored, no charge change."
    assert not Invoice.objects.filter(account=account, kind="credit_note").exists()
    close = UsageClose.objects.get(subscription__account=account, period_start=T0)
    assert close.billed_units["helpdesk_tickets"] == 349
    assert statuses(account, "T-350") == {"excluded"}


def test_a_rejected_dispute_keeps_the_ticket_billed_and_says_why(account, partner):  # noqa: F811
    outbox.endpoint_create(partner=partner, url="https://hooks.example/in")
    billed(account, "T-1")
    with at(HALF):
        dispute = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-1", reason="not_a_customer"
        )
        with pytest.raises(DomainError, match="Say why"):
            ticket_disputes.ticket_dispute_reject(dispute=dispute, decision="  ")
        dispute = ticket_disputes.ticket_dispute_reject(
            dispute=dispute, decision="An agent answered a real order question."
        )
        with pytest.raises(Conflict, match="rejected already"):
            ticket_disputes.ticket_dispute_accept(dispute=dispute)
    assert dispute.status == "rejected" and dispute.decision.startswith("An agent answered")
    assert statuses(account, "T-1") == {"final"}
    assert webhooks(account)[-1] == ("usage_dispute.resolved", "rejected")


def test_what_cannot_be_contested_is_refused_in_words(account):  # noqa: F811
    billed(account, "T-1")
    with at(HALF):
        with pytest.raises(NotFound, match="T-9 was not billed"):
            ticket_disputes.ticket_dispute_open(account=account, ticket="T-9", reason="spam")
        with pytest.raises(DomainError, match="Say in the comment"):
            ticket_disputes.ticket_dispute_open(account=account, ticket="T-1", reason="other")
        with pytest.raises(DomainError, match="Choose why"):
            ticket_disputes.ticket_dispute_open(account=account, ticket="T-1", reason="nope")
        ticket_disputes.ticket_dispute_open(account=account, ticket="T-1", reason="spam")
        with pytest.raises(Conflict, match="already contested") as again:
            ticket_disputes.ticket_dispute_open(account=account, ticket="T-1", reason="test")
    assert again.value.code == "already_open"
    assert TicketDispute.objects.filter(account=account).count() == 1


def test_a_ticket_is_contested_within_30_days_of_its_invoice(account):  # noqa: F811
    billed(account, "T-1")
    billing_at(END)
    [close] = Invoice.objects.filter(account=account, reason="period_close")
    with at(close.issued_at + timedelta(days=30)):
        ticket_disputes.ticket_dispute_open(account=account, ticket="T-1", reason="spam")
    billed(account, "T-2")
    with at(close.issued_at + timedelta(days=30, seconds=1)), pytest.raises(Conflict) as late:
        ticket_disputes.ticket_dispute_open(account=account, ticket="T-2", reason="spam")
    assert late.value.code == "too_late" and "within 30 days" in str(late.value)


def test_M1_a_merged_ticket_contested_as_a_duplicate_is_accepted_automatically(
    account,  # noqa: F811
):
    billed(account, "T-1")
    billed(account, "T-2")
    with at(HALF + timedelta(hours=1)):
        ingest(
            account,
            [
                {
                    "id": "merge-1",
                    "type": "ticket_merged",
                    "ticket": "T-2",
                    "into": "T-1",
                    "occurred_at": HALF + timedelta(hours=1),
                }
            ],
            now=HALF + timedelta(hours=1),
        )
        dispute = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-2", reason="duplicate", comment="Same order twice"
        )
    assert dispute.status == "accepted" and dispute.decided_by == "automatically"
    assert dispute.decision.startswith("The helpdesk merged ticket T-2 into T-1 on 16 Nov 2026")
    assert statuses(account, "T-2") == {"excluded"} and statuses(account, "T-1") == {"final"}


def test_H3_a_ticket_the_helpdesk_flagged_as_spam_is_accepted_when_the_flag_arrives(
    account,  # noqa: F811
):
    billed(account, "T-1")
    with at(HALF + timedelta(hours=1)):
        dispute = ticket_disputes.ticket_dispute_open(account=account, ticket="T-1", reason="spam")
    assert dispute.status == "open"  # no proof yet: the operators' queue
    flagged = HALF + timedelta(hours=2)
    with at(flagged):
        ingest(
            account,
            [
                {
                    "id": "spam-1",
                    "type": "ticket_updated",
                    "ticket": "T-1",
                    "changes": {"spam": True},
                    "occurred_at": flagged,
                }
            ],
            now=flagged,
        )
        assert ticket_disputes.ticket_disputes_auto_resolve() == 1
    dispute.refresh_from_db()
    assert dispute.status == "accepted" and "flagged ticket T-1 as spam" in dispute.decision
    assert statuses(account, "T-1") == {"excluded"}


def test_a_mail_loop_is_contested_in_bulk_by_requester_and_by_time_range(
    account,  # noqa: F811
):
    for i in range(5):
        billed(
            account, f"L-{i}", when=HALF + timedelta(minutes=i), requester="noreply@vendor.example"
        )
    billed(account, "REAL-1", when=HALF + timedelta(hours=3))
    with at(HALF + timedelta(hours=4)):
        ticket_disputes.ticket_dispute_open(account=account, ticket="L-0", reason="spam")
        result = ticket_disputes.ticket_disputes_open_bulk(
            account=account,
            reason="auto_reply_loop",
            comment="Auto-responder loop",
            requester="noreply@vendor.example",
        )
    assert sorted(d.ticket for d in result.opened) == ["L-1", "L-2", "L-3", "L-4"]
    assert result.skipped == [("L-0", "Ticket L-0 is already contested: we are looking at it.")]
    with at(HALF + timedelta(hours=4)):
        by_range = ticket_disputes.ticket_disputes_open_bulk(
            account=account,
            reason="test",
            comment="Our load test",
            start=HALF + timedelta(hours=2),
            end=HALF + timedelta(hours=4),
        )
        with pytest.raises(DomainError, match="Name a requester, or a time range"):
            ticket_disputes.ticket_disputes_open_bulk(account=account, reason="spam")
    assert [d.ticket for d in by_range.opened] == ["REAL-1"]
    assert TicketDispute.objects.filter(account=account, status="open").count() == 6
