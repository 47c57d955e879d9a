"""Cancelling at the end of the cycle: scheduled like a downgrade (P7), applied by the periodic
run_billing exactly at the cycle's end (the last usage period invoiced as usual, no fee
after, features off, never closed again), undone until then; shown by the partner API."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.errors import Conflict
from billing import changes, payments
from billing.models import Invoice, UsageClose
from billing.run import run_billing
from metering.models import Entitlement
from plans.models import ScheduledChange, Subscription
from tests.billing.charges import counted
from tests.billing.pages_fixtures import T0, account  # noqa: F401
from tests.billing.test_money_safety import card
from tests.billing.test_payments import DECLINED, OK

END = datetime(2026, 12, 1, tzinfo=UTC)  # the shop's first cycle: Nov 1 → Dec 1
MID = T0 + timedelta(days=15)
FEES = {"plan_fee", "addon_fee", "edition_fee", "commitment"}


def billing_at(moment):
    with time_machine.travel(moment, tick=False):
        return run_billing(as_of=moment)


def kinds(invoice) -> set[str]:
    return {line.kind for line in invoice.lines.all()}


def test_the_subscription_ends_at_the_cycle_end_with_its_last_usage_invoiced(
    account,  # noqa: F811
):
    counted(account, "helpdesk_tickets", 350, T0 + timedelta(days=10))  # 50 over Basic's 300
    with time_machine.travel(MID, tick=False):
        downgrade = changes.subscription_change(
            account=account, request=changes.ChangeRequest(plan="starter")
        ).scheduled[0]
        cancel, new = changes.subscription_cancel_at_period_end(account=account)
        again, new_again = changes.subscription_cancel_at_period_end(account=account)
    assert new and not new_again and again.pk == cancel.pk  # a double click finds the first
    assert cancel.effective_at == END
    # Until the end, nothing happens: active, features on.
    assert billing_at(END - timedelta(seconds=1)).invoices == []
    live = Subscription.objects.get(account=account)
    assert (live.status, live.ended_at) == ("active", None)
    run = billing_at(END)
    [invoice] = Invoice.objects.filter(account=account, reason="period_close")
    assert run.invoices == [invoice.pk]
    assert kinds(invoice) == {"overage"} and not kinds(invoice) & FEES  # no next cycle's fee
    assert invoice.total_minor == 4000  # one block of 100 beyond 300 (P2)
    ended = Subscription.objects.get(account=account)
    assert (ended.status, ended.ended_at) == ("canceled", END)
    assert ScheduledChange.objects.get(pk=cancel.pk).status == "applied"
    assert ScheduledChange.objects.get(pk=downgrade.pk).status == "canceled"  # moot now
    states = set(Entitlement.objects.filter(account=account).values_list("feature", "state"))
    assert states == {(f, "suspended") for f in ("helpdesk", "ai_agents", "convert_campaigns")}
    ended_words = "Subscription ended: service ran until Nov 30, 2026."
    assert Entitlement.objects.filter(reason=ended_words).count() == 3
    # Months later: never closed again, no invoice.
    invoices = Invoice.objects.filter(account=account).count()
    billing_at(END + timedelta(days=70))
    assert Invoice.objects.filter(account=account).count() == invoices
    assert UsageClose.objects.filter(subscription=ended).count() == 1


def test_undone_before_the_end_the_subscription_renews_as_before(account):  # noqa: F811
    with time_machine.travel(MID, tick=False):
        cancel, _ = changes.subscription_cancel_at_period_end(account=account)
        changes.scheduled_change_cancel(account=account, change_id=cancel.pk)
        with pytest.raises(Conflict):  # undone once: a second undo says so
            changes.scheduled_change_cancel(account=account, change_id=cancel.pk)
    billing_at(END)
    invoice = Invoice.objects.get(account=account, reason="period_close")
    assert "plan_fee" in kinds(invoice)
    live = Subscription.objects.get(account=account)
    assert live.ended_at is None and live.current_period_end == datetime(2027, 1, 1, tzinfo=UTC)
    assert not Entitlement.objects.filter(account=account).exists()


def test_the_partner_api_shows_the_scheduled_end(account, partner_api):  # noqa: F811
    with time_machine.travel(MID, tick=False):
        cancel, _ = changes.subscription_cancel_at_period_end(account=account)
        body = partner_api.get("/api/v1/accounts/shop").json()
    [scheduled] = body["subscription"]["scheduled_changes"]
    assert scheduled["id"] == cancel.pk
    assert scheduled["change"] == "subscription ends (canceled at the end of the cycle)"
    assert scheduled["effective_at"].startswith("2026-12-01T00:00:00")


def test_an_unpaid_last_invoice_after_the_end_is_dunned_without_suspending_what_ended(
    account,  # noqa: F811
    stripe_standin,
):
    """The last period's invoice is charged after the subscription ended; declined, it is
    retried as any other (F3), but there is nothing left to suspend (F4): the subscription
    stays canceled, and no run fails on it."""
    card(account, stripe_standin, DECLINED)
    counted(account, "helpdesk_tickets", 350, T0 + timedelta(days=10))
    with time_machine.travel(MID, tick=False):
        changes.subscription_cancel_at_period_end(account=account)
    billing_at(END)
    last = Invoice.objects.get(account=account, reason="period_close")
    assert (last.status, last.total_minor) == ("past_due", 4000)
    run = billing_at(END + timedelta(days=15))  # past the 14 days after which F4 suspends
    assert run.dunning["suspensions"] == 0
    ended = Subscription.objects.get(account=account)
    assert (ended.status, ended.ended_at) == ("canceled", END)
    last.refresh_from_db()
    assert last.status == "past_due" and last.attempts.count() > 1  # retried, debt stands


def test_the_last_invoice_paid_after_the_end_leaves_the_subscription_ended(
    account,  # noqa: F811
    stripe_standin,
):
    """Paying what is owed after the end settles the invoice; the subscription is not made
    active again (starting again is the merchant's choice, billing.restart)."""
    card(account, stripe_standin, DECLINED)
    counted(account, "helpdesk_tickets", 350, T0 + timedelta(days=10))
    with time_machine.travel(MID, tick=False):
        changes.subscription_cancel_at_period_end(account=account)
    billing_at(END)
    card(account, stripe_standin, OK)
    with time_machine.travel(END + timedelta(days=3), tick=False):
        for invoice in Invoice.objects.filter(account=account, status="past_due"):
            payments.invoice_charge(invoice_id=invoice.pk, trigger="retry")
    statuses = set(Invoice.objects.filter(account=account).values_list("reason", "status"))
    assert statuses == {("subscription_start", "paid"), ("period_close", "paid")}
    ended = Subscription.objects.get(account=account)
    assert (ended.status, ended.ended_at) == ("canceled", END)
    assert len([i for i in stripe_standin.intents() if i.status == "succeeded"]) == 2
