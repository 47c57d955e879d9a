"""Partners contest billed tickets for their merchants: /api/v1/accounts/{slug}/ticket-disputes.
Times are fixed instants, never today's date."""

from datetime import timedelta

import time_machine

from accounts import services as account_services
from billing.models import TicketDispute
from outbox import services as outbox
from outbox.models import Event as OutboxEvent
from tests.billing.pages_fixtures import account  # noqa: F401
from tests.billing.test_cancel_at_period_end import END, billing_at
from tests.billing.test_ticket_disputes import HALF, billed
from tests.conftest import client_with_key

URL = "/api/v1/accounts/shop/ticket-disputes"


def at(moment):
    return time_machine.travel(moment, tick=False)


def test_a_partner_contests_a_ticket_and_reads_the_decision(account, partner_api):  # noqa: F811
    billed(account, "T-1")
    with at(HALF + timedelta(hours=1)):
        made = partner_api.post(
            URL,
            {"ticket": "T-1", "reason": "test", "comment": "QA"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="contest-1",
        )
        again = partner_api.post(
            URL,
            {"ticket": "T-1", "reason": "test", "comment": "QA"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="contest-1",
        )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["status"] == "open" and body["outcome"] is None and body["ticket"] == "T-1"
    assert body["credited"] == {"amount": 0, "currency": account.currency}
    assert body["filed_by"]  # the key that filed it
    assert (
        again.status_code == 201 and again.json()["id"] == body["id"]
    )  # replayed, not filed twice
    assert TicketDispute.objects.filter(account=account).count() == 1

    dispute = TicketDispute.objects.get()
    from billing import ticket_disputes

    with at(HALF + timedelta(hours=2)):
        ticket_disputes.ticket_dispute_reject(dispute=dispute, decision="A real order question.")
    one = partner_api.get(f"{URL}/{body['id']}").json()
    assert one["status"] == "rejected" and one["decision"] == "A real order question."
    listed = partner_api.get(URL, {"status": "rejected"}).json()
    assert [d["ticket"] for d in listed["results"]] == ["T-1"]
    assert partner_api.get(URL, {"status": "open"}).json()["results"] == []
    assert partner_api.get(URL, {"status": "maybe"}).status_code == 400


def test_refusals_answer_with_their_code_and_words(account, partner_api):  # noqa: F811
    billed(account, "T-1")
    with at(HALF):
        missing = partner_api.post(URL, {"ticket": "T-9", "reason": "spam"}, format="json")
        partner_api.post(URL, {"ticket": "T-1", "reason": "spam"}, format="json")
        twice = partner_api.post(URL, {"ticket": "T-1", "reason": "spam"}, format="json")
        other = partner_api.post(URL, {"ticket": "T-1", "reason": "other"}, format="json")
        bad = partner_api.post(URL, {"ticket": "T-1", "reason": "because"}, format="json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_billed"
    assert "T-9 was not billed" in missing.json()["error"]["message"]
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_open"
    assert other.status_code == 400 and other.json()["error"]["details"]["field"] == "comment"
    assert bad.status_code == 400


def test_a_read_only_key_cannot_contest(account):  # noqa: F811
    billed(account, "T-1")
    _, raw = account_services.api_key_create(
        partner=account.partner, name="reader", scopes=["read"]
    )
    reader = client_with_key(raw)
    with at(HALF):
        refused = reader.post(URL, {"ticket": "T-1", "reason": "spam"}, format="json")
    assert refused.status_code == 403
    assert not TicketDispute.objects.exists()
    assert reader.get(URL).status_code == 200


def test_a_partner_contests_a_loop_in_bulk_and_gets_the_webhooks(
    account,  # noqa: F811
    partner,
    partner_api,
):
    outbox.endpoint_create(partner=partner, url="https://hooks.example/in")
    for i in range(3):
        billed(account, f"L-{i}", when=HALF + timedelta(minutes=i), requester="bot@loop.example")
    with at(HALF + timedelta(hours=1)):
        answer = partner_api.post(
            f"{URL}/bulk",
            {"requester": "bot@loop.example", "reason": "auto_reply_loop", "comment": "Loop"},
            format="json",
        )
        again = partner_api.post(
            f"{URL}/bulk",
            {"requester": "bot@loop.example", "reason": "auto_reply_loop"},
            format="json",
        )
        half_range = partner_api.post(
            f"{URL}/bulk",
            {"from": (HALF - timedelta(hours=1)).isoformat(), "reason": "spam"},
            format="json",
        )
    assert answer.status_code == 200, answer.content
    assert sorted(d["ticket"] for d in answer.json()["opened"]) == ["L-0", "L-1", "L-2"]
    assert answer.json()["skipped"] == []
    skipped = again.json()["skipped"]
    assert [s["ticket"] for s in skipped] == ["L-0", "L-1", "L-2"]
    assert all("already contested" in s["message"] for s in skipped)
    assert (
        half_range.status_code == 400
        and "both `from` and `to`" in half_range.json()["error"]["message"]
    )
    created = OutboxEvent.objects.filter(account=account, type="usage_dispute.created")
    assert created.count() == 3
    assert {e.data["ticket"] for e in created} == {"L-0", "L-1", "L-2"}


def test_the_ticket_answer_says_excluded_once_accepted_after_the_close(
    account,  # noqa: F811
    partner_api,
):
    billed(account, "T-1")
    billing_at(END)
    from billing import ticket_disputes

    with at(END + timedelta(days=2)):
        made = partner_api.post(URL, {"ticket": "T-1", "reason": "test"}, format="json").json()
        ticket_disputes.ticket_dispute_accept(dispute=TicketDispute.objects.get(pk=made["id"]))
        answer = partner_api.get("/api/v1/accounts/shop/tickets/T-1/billing").json()
    helpdesk = answer["meters"]["helpdesk_tickets"]
    assert helpdesk["counted"] is False and helpdesk["reason"]["code"] == "excluded"
    assert [u["status"] for u in helpdesk["units"]] == ["excluded"]
    decided = partner_api.get(f"{URL}/{made['id']}").json()
    # Basic includes 300 tickets: one ticket inside the allowance made no money.
    assert decided["outcome"] == "allowance_restored" and decided["credit_note"] is None
    assert decided["decision"] == "Accepted: allowance restored, no charge change."
