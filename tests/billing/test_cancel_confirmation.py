"""Cancelling as merchants expect (issue 23): a confirmation step that says what ends when and
asks why (optional), the reason kept, one email per moment (scheduled, undone, ended), one
sentence per state on every surface (a subscription that ends never "renews"), and after the
end: usage history, invoices and documents readable, the tabs leading to starting again, the
partner API showing the last subscription. Times are fixed, never today's date."""

from datetime import UTC, datetime, timedelta

import pytest

from accounts.errors import Conflict
from audit.models import AuditEntry
from billing import changes, restart
from billing.models import Invoice
from billing.run import run_billing
from plans.models import ScheduledChange
from tests.billing.charges import counted
from tests.billing.pages_fixtures import HALF, T0, account, at  # noqa: F401

END = datetime(2026, 12, 1, tzinfo=UTC)  # the shop's first cycle: Nov 1 → Dec 1
ENDS = "Your subscription ends: everything works until <strong>Nov 30, 2026</strong>"
ENDED = "Your subscription has ended: service ran until <strong>Nov 30, 2026</strong>"
SCHEDULED = "Your subscription ends: it runs until Nov 30, 2026"
UNDONE = "Your subscription continues: it renews from Dec 1, 2026"
ENDED_SUBJECT = "Your subscription has ended"


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def mails(mailoutbox, django_capture_on_commit_callbacks):
    """What reaches the outbox once each block's transaction would commit."""

    def sent(subject: str) -> list:
        return [m for m in mailoutbox if m.subject == subject]

    sent.commit = lambda: django_capture_on_commit_callbacks(execute=True)
    return sent


def text(response) -> str:
    return response.content.decode()


def test_the_confirmation_step_says_what_ends_when_then_keeps_the_reason(
    account,  # noqa: F811
    owner,
    logged_in,
    mails,
):
    owner.email = "owner@shop.example"  # the owners and admins are told too
    owner.save()
    counted(account, "helpdesk_tickets", 350, T0 + timedelta(days=10))  # a block of 100 over
    with at():
        page = text(logged_in.get("/billing/shop/cancel/"))
    assert "everything works until Nov 30, 2026, then nothing renews." in page
    assert "No further fees are charged" in page and "Nothing already paid is refunded" in page
    assert "Nov 1 – Nov 30, 2026: invoiced as usual when it closes." in page
    assert "Overage so far: <strong>$40.00</strong>" in page  # the final invoice will carry it
    assert "Issued on Dec 1, 2026 with that usage" in page
    assert "It costs too much" in page and "Anything we could have done better?" in page
    assert ScheduledChange.objects.count() == 0 and mails(SCHEDULED) == []  # nothing yet
    form = {"form_token": "c1", "reason": "too_expensive", "comment": "  Voice is pricey.  "}
    with at(), mails.commit():
        done = logged_in.post("/billing/shop/cancel/", form, follow=True)
        logged_in.post("/billing/shop/cancel/", form)  # a double click: nothing more
    assert done.redirect_chain[-1][0] == "/billing/shop/"  # the overview, which says "ends"
    overview = text(done)
    assert "Cancelled: your subscription runs until Nov 30, 2026" in overview
    assert ENDS in overview and "Renews" not in overview
    change = ScheduledChange.objects.get()
    assert (change.cancel, change.cancel_reason, change.cancel_comment) == (
        True,
        "too_expensive",
        "Voice is pricey.",
    )
    [mail] = mails(SCHEDULED)
    assert mail.to == ["billing@shop.example", "owner@shop.example"]
    assert "Everything works until Nov 30, 2026, the last day of service" in mail.body
    assert "The usage of your last period (Nov 1 – Nov 30, 2026) is invoiced" in mail.body
    assert "From Dec 1, 2026 the helpdesk, automation and campaigns are switched off" in mail.body
    assert "/billing/shop/plan/" in mail.body  # where to undo it


@pytest.mark.parametrize(
    "form, error",
    [
        ({"reason": "bored"}, "Select a valid choice. bored is not one of the available choices."),
        ({"comment": "x" * 1001}, "Ensure this value has at most 1000 characters (it has 1001)."),
    ],
)
def test_a_bad_reason_is_sent_back_with_the_form_and_nothing_is_cancelled(
    account,  # noqa: F811
    logged_in,
    mails,
    form,
    error,
):
    with at(), mails.commit():
        sent_back = logged_in.post("/billing/shop/cancel/", {"form_token": "b1", **form})
        assert sent_back.status_code == 400
        assert error in text(sent_back) and "Cancel my subscription" in text(sent_back)
        assert not ScheduledChange.objects.exists() and mails(SCHEDULED) == []
        # The token was not spent on the bad form: the corrected one goes through.
        fixed = logged_in.post("/billing/shop/cancel/", {"form_token": "b1"})
    assert fixed.status_code == 302 and ScheduledChange.objects.get().cancel_reason == ""


def test_agents_see_no_cancel_step(account, teammate, client):  # noqa: F811
    client.force_login(teammate)
    with at():
        assert client.get("/billing/shop/cancel/").status_code == 403
        assert client.post("/billing/shop/cancel/", {"form_token": "t"}).status_code == (403)
        assert "Cancel subscription…" not in text(client.get("/billing/shop/plan/"))
    assert not ScheduledChange.objects.exists()


def test_each_moment_is_emailed_once_scheduled_undone_and_ended(account, mails):  # noqa: F811
    with at(), mails.commit():
        first, _ = changes.subscription_cancel_at_period_end(account=account)
        changes.subscription_cancel_at_period_end(account=account)  # finds the first: no email
        changes.scheduled_change_cancel(account=account, change_id=first.pk)
        with pytest.raises(Conflict):  # undone already: no second email
            changes.scheduled_change_cancel(account=account, change_id=first.pk)
    assert len(mails(SCHEDULED)) == 1
    [undone] = mails(UNDONE)
    assert "Your billing cycle runs until Nov 30, 2026, and your subscription renews from" in (
        undone.body
    )
    counted(account, "helpdesk_tickets", 350, T0 + timedelta(days=10))
    with at(HALF + timedelta(days=1)), mails.commit():
        changes.subscription_cancel_at_period_end(account=account, reason="closing")
    assert len(mails(SCHEDULED)) == 2  # asked again after the undo: a new cancellation
    for moment in (END, END + timedelta(hours=1), END + timedelta(days=40)):  # runs again
        with at(moment), mails.commit():
            run_billing(as_of=moment)
    [ended] = mails(ENDED_SUBJECT)
    final = Invoice.objects.get(account=account, reason="period_close")
    assert final.total_minor == 4000
    assert "service ran until Nov 30, 2026" in ended.body
    assert f"Your final invoice {final.number} ($40.00) covers the usage of Nov 1 – Nov 30" in (
        ended.body
    )
    assert "$40.00 is due: we charge it to your card on file" in ended.body
    # Each email is in the audit log once too.
    templates = AuditEntry.objects.filter(action="email.sent").values_list(
        "after__template", flat=True
    )
    assert sorted(t for t in templates if "cancel" in t or t == "subscription_ended") == [
        "cancellation_scheduled",
        "cancellation_scheduled",
        "cancellation_undone",
        "subscription_ended",
    ]


def test_a_cancellation_hides_the_scheduled_downgrade_which_undo_brings_back(
    account,  # noqa: F811
    logged_in,
):
    """Like Stripe's cancel_at_period_end: the downgrade stays scheduled but never applies
    while the subscription ends; a new downgrade is refused; undoing the end restores it."""
    with at():
        downgrade = changes.subscription_change(
            account=account, request=changes.ChangeRequest(plan="starter")
        ).scheduled[0]
        confirm = text(logged_in.get("/billing/shop/cancel/"))
        assert "Basic → Starter plan will not apply: the subscription ends first." in confirm
        cancel, _ = changes.subscription_cancel_at_period_end(account=account)
        page = text(logged_in.get("/billing/shop/"))
        assert ENDS in page and "Basic → Starter plan" not in page and "Renews" not in page
        with pytest.raises(Conflict) as refused:
            changes.subscription_change(
                account=account, request=changes.ChangeRequest(plan="starter")
            )
        assert refused.value.code == "subscription_ending"
        refused_page = logged_in.get("/billing/shop/change/?plan=starter", follow=True)
        assert "Undo the cancellation first." in text(refused_page)
        changes.scheduled_change_cancel(account=account, change_id=cancel.pk)
        page = text(logged_in.get("/billing/shop/"))
    assert "Basic → Starter plan from Dec 1, 2026" in page and "Renews: the next cycle" in page
    assert ScheduledChange.objects.get(pk=downgrade.pk).status == "scheduled"


def test_the_landing_page_says_one_sentence_per_state(account, logged_in):  # noqa: F811
    with at():
        renewing = text(logged_in.get("/"))
        changes.subscription_cancel_at_period_end(account=account)
        ending = text(logged_in.get("/"))
    assert "Renews: the next cycle runs from <strong>Dec 1, 2026</strong>" in renewing
    assert ENDS in ending and "Renews" not in ending and "renews on" not in ending
    with at(END):
        run_billing(as_of=END)
    with at(END + timedelta(days=3)):
        ended = text(logged_in.get("/"))
    assert ENDED in ended and "/billing/shop/plan/#start" in ended


@pytest.fixture
def ended(account):  # noqa: F811
    """350 tickets in November (one block over), canceled mid-cycle, ended on Dec 1."""
    counted(account, "helpdesk_tickets", 350, T0 + timedelta(days=10))
    with at():
        changes.subscription_cancel_at_period_end(account=account, reason="switching")
    with at(END):
        run_billing(as_of=END)
    return account


def test_after_the_end_history_stays_readable_and_the_tabs_lead_to_starting_again(
    ended,
    logged_in,
):
    with at(END + timedelta(days=10)):
        overview = text(logged_in.get("/billing/shop/"))
        usage = text(logged_in.get("/billing/shop/usage/"))
        november = text(logged_in.get("/billing/shop/usage/", {"period": "2026-11"}))
        invoices = text(logged_in.get("/billing/shop/invoices/"))
        addons = text(logged_in.get("/billing/shop/add-ons/"))
        plan = text(logged_in.get("/billing/shop/plan/"))
        final = Invoice.objects.get(account=ended, reason="period_close")
        pdf = logged_in.get(f"/billing/shop/invoices/{final.pk}/pdf")
    assert ENDED in overview and "Choose a plan to start again" in overview
    assert "No subscription" not in usage and ENDED in usage
    assert "<strong>350</strong> / 300 included" in usage and "Nov 1 – Nov 30, 2026" in usage
    assert "<strong>350</strong> / 300 included" in november
    assert final.number in invoices and "$40.00" in invoices
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert "set by our team" not in addons and "Choose a plan to start again" in addons
    assert "/billing/shop/plan/#start" in addons
    assert "set by our team" not in plan and "Start monthly" in plan


def test_the_partner_api_shows_renews_ends_then_the_ended_subscription(
    account,  # noqa: F811
    partner_api,
):
    def body():
        return partner_api.get("/api/v1/accounts/shop").json()

    with at():
        renewing = body()["subscription"]
        change, _ = changes.subscription_cancel_at_period_end(account=account)
        ending = body()
    assert (renewing["state"], renewing["renews_at"], renewing["ends_at"]) == (
        "renews",
        "2026-12-01T00:00:00Z",
        None,
    )
    assert ending["last_subscription"] is None
    assert (ending["subscription"]["state"], ending["subscription"]["renews_at"]) == ("ends", None)
    assert ending["subscription"]["ends_at"] == "2026-12-01T00:00:00Z"
    with at(END):
        run_billing(as_of=END)
    with at(END + timedelta(days=3)):
        after = body()
    assert after["subscription"] is None  # none is live
    last = after["last_subscription"]
    assert {
        k: last[k] for k in ("plan", "status", "state", "started_at", "ends_at", "ended_at")
    } == {
        "plan": "basic",
        "status": "canceled",
        "state": "ended",
        "started_at": "2026-11-01T00:00:00Z",
        "ends_at": "2026-12-01T00:00:00Z",
        "ended_at": "2026-12-01T00:00:00Z",
    }
    assert last["current_period"] == {
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-12-01T00:00:00Z",
    }
    assert last["scheduled_changes"] == [] and last["renews_at"] is None
    with at(END + timedelta(days=3)):
        restart.subscription_restart(account=account, plan_code="pro", interval="month")
        again = body()
    assert again["last_subscription"] is None and again["subscription"]["state"] == "renews"
