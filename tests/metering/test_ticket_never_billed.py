"""A ticket no invoice bills says so (issue 23, item 7): `GET .../tickets/{id}/billing` answers
`counted: false` with a reason for units in a period no subscription bills (before the first
one, or while there was none), and the usage answer counts them in no period either."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing import changes, restart
from billing.run import run_billing
from metering import event_store, services
from metering.models import Charge, ChargeStatus, Event, SubjectKind

from .helpers import ingest

pytestmark = pytest.mark.django_db

OPEN = datetime(2026, 11, 16, 12, tzinfo=UTC)  # the shop subscribes: periods run 16th → 16th
NOW = datetime(2026, 11, 25, tzinfo=UTC)
END = datetime(2026, 12, 16, 12, tzinfo=UTC)  # canceled at the end of its first cycle
AGAIN = datetime(2027, 1, 5, 9, tzinfo=UTC)  # started again
H = timedelta(hours=1)


def answered(ticket: str, at: datetime) -> list[dict]:
    """A customer's email and the agent's reply: one billable helpdesk ticket (H1)."""
    return [
        {
            "id": f"{ticket}-c",
            "type": "message",
            "ticket": ticket,
            "occurred_at": at,
            "channel": "email",
            "author": "customer",
        },
        {
            "id": f"{ticket}-a",
            "type": "message",
            "ticket": ticket,
            "occurred_at": at + H,
            "channel": "email",
            "author": "agent",
        },
    ]


def stored_before_ingest_refused_it(account, ticket: str, at: datetime) -> None:
    """Events dated before the first subscription, as they were stored before ingest refused
    them (metering.services), then re-evaluated like any other subject."""
    for event in answered(ticket, at):
        Event.objects.create(account=account, received_at=NOW, event_id=event.pop("id"), **event)
    event_store.mark_for_reevaluation([(account.pk, "ticket", ticket)], now=NOW)
    services.reevaluate_all_pending(as_of=NOW)


@pytest.fixture
def shop(make_account):
    with time_machine.travel(OPEN, tick=False):
        return make_account(slug="shop", plan="basic")


def verdict(api, ticket: str) -> dict:
    response = api.get(f"/api/v1/accounts/shop/tickets/{ticket}/billing")
    assert response.status_code == 200, response.json()
    return response.json()["meters"]["helpdesk_tickets"]


def used(api, period: str | None = None) -> int:
    query = {"period": period} if period else {}
    response = api.get("/api/v1/accounts/shop/usage", query)
    assert response.status_code == 200, response.json()
    return response.json()["meters"]["helpdesk_tickets"]["used"]


@time_machine.travel(NOW, tick=False)
def test_a_ticket_dated_before_the_first_subscription_is_not_counted_and_says_why(
    shop, partner_api
):
    stored_before_ingest_refused_it(shop, "T-old", datetime(2026, 11, 2, 9, tzinfo=UTC))
    ingest(shop, answered("T-new", NOW - 3 * H), now=NOW)
    old = verdict(partner_api, "T-old")
    assert old["counted"] is False
    assert old["reason"] == {
        "code": "before_subscription",
        "message": "Billable on 2026-11-02, before the account's first subscription began "
        "(2026-11-16): no period of the account holds it, so no invoice bills it.",
    }
    # The rules' verdict is still shown: billable under H1, in a period that was never billed.
    [unit] = old["units"]
    assert unit["status"] == "final" and unit["period_start"] == "2026-10-16T12:00:00Z"
    new = verdict(partner_api, "T-new")
    assert (new["counted"], new["reason"]) == (True, None)
    # Usage agrees: the period under way counts T-new only, and the month the old ticket's
    # unit falls in (before the subscription) counts nothing.
    assert used(partner_api) == 1
    assert used(partner_api, "2026-10") == 0


def test_a_ticket_of_the_days_between_an_end_and_a_start_again_is_not_counted(shop, partner_api):
    with time_machine.travel(NOW, tick=False):
        changes.subscription_cancel_at_period_end(account=shop)
    with time_machine.travel(END, tick=False):
        run_billing(as_of=END)
    gap = datetime(2026, 12, 20, 10, tzinfo=UTC)
    with time_machine.travel(gap + 2 * H, tick=False):
        ingest(shop, answered("T-gap", gap), now=gap + 2 * H)
        during = verdict(partner_api, "T-gap")
    assert during["counted"] is False
    assert during["reason"] == {
        "code": "no_subscription",
        "message": "Billable on 2026-12-20, while the account had no subscription: no period of "
        "the account holds it, so no invoice bills it.",
    }
    with time_machine.travel(AGAIN, tick=False):
        restart.subscription_restart(account=shop, plan_code="basic", interval="month")
        # Starting again bills from its own first period: the gap stays unbilled.
        assert verdict(partner_api, "T-gap") == during
        assert used(partner_api) == 0
        assert used(partner_api, "2026-12") == 0


@time_machine.travel(NOW, tick=False)
def test_every_ticket_not_counted_has_a_reason(shop, partner_api):
    # Not billable under the rules: a public Facebook comment (H5).
    ingest(
        shop,
        [{**event, "channel": "facebook_comment"} for event in answered("FB1", NOW - 3 * H)],
        now=NOW,
    )
    facebook = verdict(partner_api, "FB1")
    assert (facebook["counted"], facebook["reason"]["code"]) == (False, "not_billable")
    assert facebook["not_counted"] == [{"rules": ["H5"]}]
    # Counted by the rules but over a paused AI limit (Z9), as limits.resolutions_limit marks it.
    Charge.objects.create(
        account=shop,
        subject_kind=SubjectKind.TICKET,
        subject="T-ai",
        meter="automated_resolutions",
        unit="1",
        status=ChargeStatus.CAPPED,
        billable_at=NOW - H,
        period_start=OPEN,
        rules=["A1", "Z9"],
        evaluated_at=NOW,
        recorded_at=NOW,
    )
    response = partner_api.get("/api/v1/accounts/shop/tickets/T-ai/billing").json()
    resolutions = response["meters"]["automated_resolutions"]
    assert (resolutions["counted"], resolutions["reason"]["code"]) == (False, "capped")


def test_the_schema_documents_the_reason(client, catalog):
    schemas = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    meter = schemas["TicketMeterOut"]["properties"]
    assert "reason" in meter and meter["reason"]["nullable"] is True
    reason = schemas["TicketReasonOut"]["properties"]
    assert reason["code"]["allOf"] == [{"$ref": "#/components/schemas/TicketNotCountedEnum"}]
    assert set(schemas["TicketNotCountedEnum"]["enum"]) == {
        "not_billable",
        "capped",
        "excluded",
        "held",
        "before_subscription",
        "no_subscription",
    }
    assert "before the account's first subscription began" in reason["code"]["description"]
