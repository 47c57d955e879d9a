"""The console's contested tickets (issue 26, item 3): the queue (open ones oldest first, with
what each ticket billed, then the recently decided), an operator's Accept and Reject through
`ticket_dispute_decide` (one `operator.ticket_dispute_*` audit row each), what the merchant
reads and is emailed afterwards. Times are fixed instants, never today's date."""

import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail

from audit.models import AuditEntry
from billing import ticket_disputes
from billing.models import TicketDispute
from tests.billing.pages_fixtures import account  # noqa: F401
from tests.billing.test_ticket_disputes import HALF, at, billed, statuses

pytestmark = pytest.mark.django_db

FILED = HALF + timedelta(hours=1)
DECIDED = HALF + timedelta(hours=5)
QUEUE = "/console/ticket-disputes/"


@pytest.fixture
def contested(account):  # noqa: F811
    """Two of the shop's billed tickets contested: T-2 an hour before T-1."""
    billed(account, "T-1")
    billed(account, "T-2")
    with at(FILED - timedelta(hours=1)):
        ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-2", reason="auto_reply_loop", comment="Vendor loop"
        )
    with at(FILED):
        ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-1", reason="test", comment="Our QA's test"
        )
    return {d.ticket: d for d in TicketDispute.objects.filter(account=account)}


def decide(ops, dispute, action, moment=DECIDED, **data):
    with at(moment):
        return ops.post(f"{QUEUE}{dispute.pk}/{action}/", {"form_token": uuid.uuid4().hex, **data})


def test_the_queue_lists_open_disputes_oldest_first_with_what_they_billed(ops, contested):
    with at(DECIDED):
        page = ops.get(QUEUE).content.decode()
    assert 'href="/console/ticket-disputes/"' in page and "Contested tickets" in page  # the tab
    waiting = page[
        page.index('id="ticket-disputes-open"') : page.index('id="ticket-disputes-decided"')
    ]
    order = re.findall(r'<tr id="ticket-dispute-(\d+)"', waiting)
    assert order == [str(contested["T-2"].pk), str(contested["T-1"].pk)]
    assert "Auto-reply loop" in waiting and "“Vendor loop”" in waiting
    assert "Helpdesk tickets: final, period from Nov 1, 2026" in waiting
    assert f'href="/console/ticket-disputes/{contested["T-1"].pk}/accept/"' in waiting
    assert f'href="/console/ticket-disputes/{contested["T-1"].pk}/reject/"' in waiting


def test_an_operator_accepts_audited_and_the_merchant_sees_the_outcome_and_is_emailed(
    ops,
    operator,
    act,
    client,
    owner,
    account,  # noqa: F811
    contested,
):
    dispute = contested["T-1"]
    with at(DECIDED):
        confirm = ops.get(f"{QUEUE}{dispute.pk}/accept/").content.decode()
        assert "Accept: ticket T-1 of Shop" in confirm and "Our QA&#x27;s test" in confirm
        response = act(f"{QUEUE}{dispute.pk}/accept/", reason="A test ticket, as they say")
    assert response.status_code == 302 and response["Location"] == QUEUE
    dispute.refresh_from_db()
    assert (dispute.status, dispute.outcome) == ("accepted", "excluded")
    assert dispute.decided_by == operator.get_username()
    assert statuses(account, "T-1") == {"excluded"} and statuses(account, "T-2") == {"final"}
    (row,) = AuditEntry.objects.filter(action="operator.ticket_dispute_accepted")
    assert (row.source, row.actor_id, row.object_label) == ("operator", operator.pk, "ticket T-1")
    assert row.reason == "A test ticket, as they say"
    with at(DECIDED):
        queue = ops.get(QUEUE).content.decode()
    assert "Ticket T-1: dispute accepted, excluded: this period is rated without it." in queue
    decided = queue[queue.index('id="ticket-disputes-decided"') :]
    assert f'<tr id="ticket-dispute-{dispute.pk}" data-dispute-status="accepted">' in decided
    (email,) = mail.outbox
    assert email.subject == "Your contested ticket T-1: accepted"
    assert email.to[0] == "billing@shop.example"
    client.force_login(owner)
    with at(DECIDED):
        page = client.get("/billing/shop/usage/why/?ticket=T-1").content.decode()
    assert "Excluded: this period is rated without it" in page
    assert "not billed: excluded after your dispute" in page


def test_a_rejection_needs_words_for_the_merchant_who_reads_them(
    ops,
    act,
    client,
    owner,
    contested,
):
    dispute = contested["T-2"]
    with at(DECIDED):
        missing = act(f"{QUEUE}{dispute.pk}/reject/", reason="  ")
    assert missing.status_code == 400
    assert "Say why, in words the merchant will read." in missing.content.decode()
    with at(DECIDED):
        act(
            f"{QUEUE}{dispute.pk}/reject/",
            reason="These came from a real customer: agents answered each one.",
        )
    dispute.refresh_from_db()
    assert dispute.status == "rejected"
    assert dispute.decision == "These came from a real customer: agents answered each one."
    assert AuditEntry.objects.filter(action="operator.ticket_dispute_rejected").count() == 1
    (email,) = mail.outbox
    assert email.subject == "Your contested ticket T-2: still billed"
    assert "Why: These came from a real customer: agents answered each one." in email.body
    client.force_login(owner)
    with at(DECIDED):
        usage = client.get("/billing/shop/usage/").content.decode()
    row = usage[usage.index(f'id="contested-{dispute.pk}"') :]
    assert "Rejected: still billed" in row[:800] and "agents answered each one" in row[:800]


def test_a_dispute_decided_meanwhile_is_not_decided_twice(ops, act, contested):
    dispute = contested["T-1"]
    with at(DECIDED):
        act(f"{QUEUE}{dispute.pk}/accept/", reason="test ticket")
        again = act(f"{QUEUE}{dispute.pk}/reject/", reason="changed my mind")
    assert again.status_code == 302
    with at(DECIDED):
        page = ops.get(QUEUE).content.decode()
    assert "The dispute of ticket T-1 was accepted already." in page
    assert AuditEntry.objects.filter(action__startswith="operator.ticket_dispute").count() == 1
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("who", ["owner", "staff_without_console"])
def test_only_operators_reach_the_queue_and_its_decisions(request, client, who, contested):
    client.force_login(request.getfixturevalue(who))
    dispute = contested["T-1"]
    assert client.get(QUEUE).status_code == 404
    assert client.post(f"{QUEUE}{dispute.pk}/accept/", {"reason": "x"}).status_code == 404
    dispute.refresh_from_db()
    assert dispute.status == "open"
