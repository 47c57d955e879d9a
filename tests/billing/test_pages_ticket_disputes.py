"""Contesting a billed ticket on the Billing & Usage pages: from "Why was this billed?", in bulk
from the Usage tab, the refusals as the form's errors, the outcome and the decision's email as
the merchant reads them. Times are fixed instants, never today's date."""

import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail

from billing import ticket_disputes
from billing.models import Invoice, TicketDispute
from tests.billing.charges import counted
from tests.billing.pages_fixtures import T0, account  # noqa: F401
from tests.billing.test_cancel_at_period_end import billing_at
from tests.billing.test_ticket_disputes import AFTER_CLOSE, END, HALF, at, billed, statuses

SOON = HALF + timedelta(hours=1)
WHY = "/billing/shop/usage/why/"


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def get(client, path, moment=SOON, **headers):
    with at(moment):
        response = client.get(path, **headers)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def post(client, path, moment=SOON, **data):
    with at(moment):
        return client.post(path, {"form_token": uuid.uuid4().hex, **data})


def contest(client, ticket="T-1", moment=SOON, **data):
    data.setdefault("reason", "test")
    data.setdefault("comment", "Our QA's test ticket")
    return post(client, f"{WHY}contest", moment, ticket=ticket, **data)


def errors(page: str) -> str:
    """The form's errors as the merchant reads them."""
    return " ".join(re.findall(r'class="error[^"]*"[^>]*>([^<]*)<', page))


def test_a_merchant_contests_a_billed_ticket_from_why_and_sees_it_waiting(
    logged_in,
    owner,
    account,  # noqa: F811
):
    billed(account, "T-1")
    page = get(logged_in, f"{WHY}?ticket=T-1")
    assert "Contest this ticket" in page
    form = page[page.index('id="contest"') :]
    assert 'name="csrfmiddlewaretoken"' in form and 'name="form_token"' in form
    for label in (
        "Spam",
        "duplicate or merged",
        "auto-reply loop",
        "test or internal",
        "not a customer",
        "Other",
    ):
        assert f">{label}</option>" in form
    response = contest(logged_in)
    assert response.status_code == 302
    assert response["Location"] == f"{WHY}?ticket=T-1#disputes"
    page = get(logged_in, response["Location"])
    assert "Ticket T-1 contested: we will look at it and email billing@shop.example" in page
    assert "Waiting for a decision" in page and "“Our QA&#x27;s test ticket”" in page
    assert "Contest this ticket</button>" not in page  # one open dispute per ticket
    dispute = TicketDispute.objects.get(account=account)
    assert (dispute.ticket, dispute.status, dispute.reason) == ("T-1", "open", "test")
    assert dispute.filed_by == owner.get_username()
    assert statuses(account, "T-1") == {"final"}  # billed until someone decides


def test_htmx_gets_the_contest_form_in_the_fragment_with_its_tokens(
    logged_in,
    account,  # noqa: F811
):
    billed(account, "T-1")
    fragment = get(logged_in, f"{WHY}?ticket=T-1", HTTP_HX_REQUEST="true")
    assert "<html" not in fragment
    assert 'name="csrfmiddlewaretoken"' in fragment and 'name="form_token"' in fragment
    assert 'action="/billing/shop/usage/why/contest"' in fragment


def test_what_cannot_be_contested_is_the_forms_error_in_words_never_a_500(
    logged_in,
    account,  # noqa: F811
):
    billed(account, "T-1")
    response = contest(logged_in, ticket="T-9")
    assert response.status_code == 400
    assert "Ticket T-9 was not billed: there is nothing to contest." in errors(
        response.content.decode()
    )
    response = contest(logged_in, reason="other", comment="")
    assert response.status_code == 400
    assert "Say in the comment why the ticket should not have been billed." in errors(
        response.content.decode()
    )
    response = contest(logged_in, reason="")
    assert "Choose why it should not have been billed." in errors(response.content.decode())
    assert contest(logged_in).status_code == 302
    again = contest(logged_in, reason="spam")
    assert again.status_code == 400
    assert "Ticket T-1 is already contested: we are looking at it." in errors(
        again.content.decode()
    )
    assert TicketDispute.objects.filter(account=account).count() == 1


def test_a_ticket_invoiced_more_than_30_days_ago_is_refused_in_words(
    logged_in,
    owner,
    account,  # noqa: F811
):
    billed(account, "T-1")
    billing_at(END)
    [close] = Invoice.objects.filter(account=account, reason="period_close")
    late = close.issued_at + timedelta(days=31)
    with at(late):
        logged_in.force_login(owner)  # a session of its own that day
    response = contest(logged_in, moment=late)
    assert response.status_code == 400
    assert "a ticket can be contested within 30 days of its invoice" in errors(
        response.content.decode()
    )
    assert not TicketDispute.objects.exists()


def test_a_teammate_without_billing_rights_reads_but_cannot_contest(
    client,
    teammate,
    account,  # noqa: F811
):
    billed(account, "T-1")
    client.force_login(teammate)
    page = get(client, f"{WHY}?ticket=T-1")
    assert "Contest this ticket</button>" not in page
    assert "An owner or admin of the account can contest this ticket" in page
    assert contest(client).status_code == 403
    assert post(client, "/billing/shop/usage/contest-bulk", reason="spam").status_code == 403
    assert not TicketDispute.objects.exists()


def test_a_mail_loop_is_contested_in_bulk_by_requester_and_the_page_says_what_was_skipped(
    logged_in,
    account,  # noqa: F811
):
    for i in range(3):
        billed(account, f"L-{i}", when=HALF + timedelta(minutes=i), requester="loop@vendor.example")
    billed(account, "REAL-1")
    with at(SOON):
        ticket_disputes.ticket_dispute_open(account=account, ticket="L-0", reason="spam")
    response = post(
        logged_in,
        "/billing/shop/usage/contest-bulk",
        requester="loop@vendor.example",
        reason="auto_reply_loop",
        comment="Auto-responder loop with a vendor",
    )
    assert response.status_code == 302 and response["Location"] == "/billing/shop/usage/#contested"
    page = get(logged_in, "/billing/shop/usage/")
    assert "2 tickets contested." in page
    assert "1 ticket skipped: Ticket L-0 is already contested: we are looking at it." in page
    assert sorted(
        TicketDispute.objects.filter(reason="auto_reply_loop").values_list("ticket", flat=True)
    ) == ["L-1", "L-2"]
    card = page[page.index('id="contested"') :]
    rows = re.findall(r'<tr id="contested-\d+"', card)
    assert len(rows) == 3  # newest first: the two of the bulk, then L-0
    assert f'href="{WHY}?ticket=L-1#disputes">L-1</a>' in card
    assert "Auto-reply loop" in card and "Waiting for a decision" in card


def test_the_bulk_form_says_what_is_missing(logged_in, account):  # noqa: F811
    billed(account, "T-1")
    url = "/billing/shop/usage/contest-bulk"
    nothing = post(logged_in, url, reason="spam")
    assert nothing.status_code == 400
    assert "Name a requester, or a time range (from and to), to contest." in errors(
        nothing.content.decode()
    )
    half = post(logged_in, url, reason="spam", start="2026-11-16T00:00")
    assert "Give both ends of the range." in errors(half.content.decode())
    empty = post(logged_in, url, reason="spam", start="2026-11-20T00:00", end="2026-11-21T00:00")
    assert empty.status_code == 400
    assert "No billed ticket matches: nothing to contest." in errors(empty.content.decode())
    by_range = post(
        logged_in,
        url,
        reason="test",
        comment="Load test",
        start="2026-11-16T00:00",
        end="2026-11-17T00:00",
    )
    assert by_range.status_code == 302
    assert TicketDispute.objects.get().ticket == "T-1"


def test_units_excluded_after_disputes_are_shown_apart_on_the_usage_tab(
    logged_in,
    account,  # noqa: F811
):
    billed(account, "T-1")
    billed(account, "T-2")
    with at(SOON):
        dispute = ticket_disputes.ticket_dispute_open(account=account, ticket="T-1", reason="spam")
        ticket_disputes.ticket_dispute_accept(dispute=dispute)
    page = get(logged_in, "/billing/shop/usage/")
    meter = page[page.index('id="meter-helpdesk_tickets"') :]
    assert "<strong>1</strong> / 300 included" in meter  # T-2 only
    assert "<dt>Excluded after disputes</dt><dd>1 " in meter


def test_the_merchant_reads_the_outcome_and_gets_one_email_per_decision(
    logged_in,
    owner,
    account,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    owner.email = "owner@shop.example"  # the billing managers are told too
    owner.save(update_fields=["email"])
    billed(account, "T-1")
    billed(account, "T-2")
    with at(SOON), django_capture_on_commit_callbacks(execute=True):
        accepted = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-1", reason="test", comment="QA"
        )
        ticket_disputes.ticket_dispute_accept(dispute=accepted)
        rejected = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-2", reason="not_a_customer"
        )
        ticket_disputes.ticket_dispute_reject(
            dispute=rejected, decision="An agent answered a real order question."
        )
    page = get(logged_in, f"{WHY}?ticket=T-1")
    assert "not billed: excluded after your dispute (test or internal: QA)" in page
    assert "Excluded: this period is rated without it" in page
    page = get(logged_in, f"{WHY}?ticket=T-2")
    assert "Rejected: still billed" in page
    assert "Why: An agent answered a real order question." in page
    assert "Contest this ticket</button>" in page  # rejected: it may be contested again
    first, second = mail.outbox
    assert first.subject == "Your contested ticket T-1: accepted"
    assert first.to == ["billing@shop.example", "owner@shop.example"]
    assert "We accepted your dispute of ticket T-1 (test or internal)." in first.body
    assert "It is not billed: the usage period under way is rated without it." in first.body
    assert second.subject == "Your contested ticket T-2: still billed"
    assert "Why: An agent answered a real order question." in second.body
    assert "/billing/shop/usage/why/?ticket=T-2" in second.body


def test_accepted_after_the_close_the_page_says_what_was_credited(
    logged_in,
    account,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    counted(account, "helpdesk_tickets", 300, T0 + timedelta(days=3))
    billed(account, "T-301")  # the 301st ticket: one block of overage ($40.00)
    billing_at(END)
    with at(AFTER_CLOSE), django_capture_on_commit_callbacks(execute=True):
        dispute = ticket_disputes.ticket_dispute_open(
            account=account, ticket="T-301", reason="auto_reply_loop", comment="Loop"
        )
        dispute = ticket_disputes.ticket_dispute_accept(dispute=dispute)
    note = dispute.credit_note.number
    page = get(logged_in, f"{WHY}?ticket=T-301", AFTER_CLOSE)
    assert f"Credited $40.00 on credit note {note}" in page
    (email,) = mail.outbox
    assert f"credit note {note} gives back $40.00" in email.body
