"""Starting again after the subscription ended (canceled at its cycle's end): a public plan, a
new cycle from today, its fee invoiced at once (P1) and charged through the one collection path,
the features switched back on; refused while a subscription is live or an invoice is past due.
From the Billing & Usage page and from the partner API. Times are fixed, never today's date."""

from datetime import timedelta

import pytest
import time_machine
from django.test import Client

from accounts.errors import Conflict, DomainError
from accounts.models import Account
from audit.models import AuditEntry
from billing import changes, restart
from billing.invoicing import invoice_transition
from billing.models import Invoice
from billing.run import run_billing
from metering.models import Charge, Entitlement
from outbox.models import Event
from outbox.services import endpoint_create
from plans.models import Subscription
from tests.billing.pages_fixtures import T0, account  # noqa: F401
from tests.billing.test_cancel_at_period_end import END, MID, billing_at
from tests.billing.test_money_safety import card, in_threads
from tests.metering.helpers import ingest
from tests.metering.test_partitions import ticket

BACK = END + timedelta(days=3, hours=9)  # Dec 4, 2026, 09:00 UTC: three days after the end
PRO_MONTH, PRO_YEAR = 36000, 360000  # the catalog's Pro: $360 a month, two months off a year


def at(moment=BACK):
    return time_machine.travel(moment, tick=False)


@pytest.fixture
def ended(account):  # noqa: F811
    """The shop canceled mid-cycle; the end applied by run_billing on Dec 1."""
    with at(MID):
        changes.subscription_cancel_at_period_end(account=account)
    billing_at(END)
    assert Subscription.objects.get(account=account).status == "canceled"
    return account


def states(shop) -> set[tuple[str, str]]:
    return set(Entitlement.objects.filter(account=shop).values_list("feature", "state"))


FEATURES = ("helpdesk", "ai_agents", "convert_campaigns")


def test_starting_again_opens_a_new_cycle_invoices_its_fee_and_switches_features_on(ended, partner):
    endpoint_create(partner=partner, url="https://hooks.partner.example/billing")
    assert states(ended) == {(f, "suspended") for f in FEATURES}
    with at():
        started = restart.subscription_restart(account=ended, plan_code="pro", interval="month")
    new = started.subscription
    assert (new.status, new.plan.code, new.interval, new.ended_at) == (
        "active",
        "pro",
        "month",
        None,
    )
    assert (new.current_period_start, new.current_period_end) == (
        BACK,
        BACK.replace(month=1, year=2027),
    )
    assert new.usage_period_start == BACK and not new.is_migrated
    invoice = started.invoice
    assert (invoice.reason, invoice.status, invoice.total_minor) == (
        "subscription_start",
        "open",
        PRO_MONTH,
    )
    assert (invoice.period_start, invoice.period_end) == (BACK, new.current_period_end)
    assert states(ended) == {(f, "active") for f in FEATURES}
    # Told to partners and kept in the audit log.
    told = list(
        Event.objects.filter(account=ended).order_by("-sequence")[:4].values_list("type", flat=True)
    )
    assert sorted(told) == ["entitlement.changed"] * 3 + ["subscription.changed"]
    assert AuditEntry.objects.filter(action="subscription.started", object_id=new.pk).exists()
    assert AuditEntry.objects.filter(action="entitlement.state", after="active").count() == 3
    # The periodic run issues no second first invoice, and the new cycle renews as any other.
    with at():
        assert run_billing(as_of=BACK).invoices == []
    renewal = new.current_period_end
    billing_at(renewal)
    [close] = Invoice.objects.filter(subscription=new, reason="period_close")
    assert "plan_fee" in {line.kind for line in close.lines.all()}
    assert close.total_minor == PRO_MONTH
    # The old subscription stays ended and is never closed again.
    assert Subscription.objects.filter(account=ended, status="canceled").count() == 1


def test_starting_again_yearly_charges_ten_months(ended):
    with at():
        started = restart.subscription_restart(account=ended, plan_code="pro", interval="year")
    assert started.invoice.total_minor == PRO_YEAR
    assert started.subscription.current_period_end == BACK.replace(year=2027)


def test_starting_again_is_refused_while_a_subscription_is_live(account):  # noqa: F811
    with at(MID), pytest.raises(Conflict) as refused:
        restart.subscription_restart(account=account, plan_code="pro", interval="month")
    assert refused.value.code == "subscription_live"


def test_starting_again_is_refused_while_an_invoice_is_past_due(ended):
    first = Invoice.objects.get(account=ended, reason="subscription_start")
    invoice_transition(invoice=first, to="past_due", reason="card declined")
    with at(), pytest.raises(Conflict) as refused:
        restart.subscription_restart_preview(account=ended, plan_code="pro", interval="month")
    assert refused.value.code == "outstanding_invoices"
    assert (
        refused.value.message
        == f"Pay what is outstanding first: $60.00 is past due ({first.number})."
    )
    assert refused.value.details == {"invoices": [first.number]}
    assert Subscription.objects.filter(account=ended).count() == 1


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_an_account_our_team_suspended_or_closed_does_not_start_again(ended, status):
    Account.objects.filter(pk=ended.pk).update(status=status)
    ended.refresh_from_db()
    with at(), pytest.raises(Conflict) as refused:
        restart.subscription_restart(account=ended, plan_code="pro", interval="month")
    assert refused.value.code == "account_not_active"
    assert (
        refused.value.message == f"This account is {status} by our team: contact us to start again."
    )


@pytest.mark.parametrize(
    ("plan", "interval", "code"),
    [
        ("gold", "month", "unknown_plan"),
        ("enterprise", "month", "no_account_terms"),
        ("pro", "week", "invalid"),
    ],
)
def test_starting_again_names_what_is_wrong_with_the_request(ended, plan, interval, code):
    with at(), pytest.raises(DomainError) as refused:
        restart.subscription_restart(account=ended, plan_code=plan, interval=interval)
    assert refused.value.code == code
    assert Subscription.objects.filter(account=ended).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_restarts_at_once_start_one_subscription(make_account):
    with at(T0):
        shop = make_account(slug="shop", plan="basic")
        run_billing(as_of=T0)
    with at(MID):
        changes.subscription_cancel_at_period_end(account=shop)
    billing_at(END)

    def start(i):
        with at():
            return restart.subscription_restart(account=shop, plan_code="pro", interval="month")

    results = in_threads(8, start)
    started = [r for r in results if isinstance(r, restart.Restart)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert (len(started), len(refused)) == (1, 7), results
    assert {r.code for r in refused} == {"subscription_live"}
    assert Subscription.objects.filter(account=shop, ended_at=None).count() == 1
    assert (
        Invoice.objects.filter(account=shop, reason="subscription_start").count() == 2
    )  # old + new


# --- the Billing & Usage page ---------------------------------------------------------------


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def text(response) -> str:
    return response.content.decode()


def test_the_page_offers_to_start_again_and_charges_the_first_cycle(
    ended, logged_in, stripe_standin
):
    card(ended, stripe_standin)
    with at():
        overview = text(logged_in.get("/billing/shop/"))
        assert "Your subscription has ended: service ran until <strong>Nov 30, 2026</strong>" in (
            overview
        )
        assert "Choose a plan to start again" in overview
        plan_page = text(logged_in.get("/billing/shop/plan/"))
        assert "Start again" in plan_page and "Start monthly" in plan_page
        assert "set by our team" not in plan_page
        confirm = text(logged_in.get("/billing/shop/start/?plan=pro&interval=month"))
        assert "Start Pro, billed monthly" in confirm
        assert "Dec 4, 2026 – Jan 4, 2027" in confirm
        assert "Start and pay $360.00" in confirm and "Visa •••• 4242" in confirm
        token = confirm.split('name="form_token" value="')[1].split('"')[0]
        done = logged_in.post(
            "/billing/shop/start/",
            {"plan": "pro", "interval": "month", "form_token": token},
            follow=True,
        )
    page = text(done)
    assert done.redirect_chain[-1][0] == "/billing/shop/"
    assert "Welcome back: you are on Pro from today." in page
    assert "is paid. Thank you!" in page
    new = Subscription.objects.get(account=ended, ended_at=None)
    assert Invoice.objects.get(subscription=new).status == "paid"
    assert [i.amount for i in stripe_standin.intents() if i.status == "succeeded"] == [PRO_MONTH]
    assert states(ended) == {(f, "active") for f in FEATURES}


def test_the_page_asks_for_a_card_before_starting_again(ended, logged_in):
    with at():
        confirm = text(logged_in.get("/billing/shop/start/?plan=pro&interval=year"))
        assert "Add a card first: the first cycle is paid at once." in confirm
        response = logged_in.post("/billing/shop/start/", {"plan": "pro", "interval": "year"})
    assert response.status_code == 302 and response["Location"] == "/billing/shop/payment-method"
    assert not Subscription.objects.filter(account=ended, ended_at=None).exists()


def test_the_page_refuses_a_bad_plan_with_a_message_and_members_without_rights(
    ended, logged_in, teammate
):
    with at():
        refused = logged_in.get("/billing/shop/start/?plan=gold&interval=month", follow=True)
        assert "Unknown plan &#x27;gold&#x27;." in text(refused)
        agent = Client()
        agent.force_login(teammate)
        assert agent.get("/billing/shop/start/?plan=pro&interval=month").status_code == 403
        assert "Ask an owner or admin" in text(agent.get("/billing/shop/plan/"))


# --- the partner API ------------------------------------------------------------------------


def test_the_api_starts_again_and_collects_at_once(
    ended, partner_api, other_partner_api, stripe_standin, django_capture_on_commit_callbacks
):
    card(ended, stripe_standin)
    url = "/api/v1/accounts/shop/subscription"
    with at():
        assert (
            other_partner_api.post(
                url, {"plan": "pro", "interval": "month"}, format="json"
            ).status_code
            == 404
        )
        bad = partner_api.post(url, {"plan": "pro", "interval": "week"}, format="json")
        assert bad.status_code == 400 and "interval" in str(bad.json()["error"]["details"])
        with django_capture_on_commit_callbacks(execute=True):
            created = partner_api.post(url, {"plan": "pro", "interval": "month"}, format="json")
        assert created.status_code == 201, created.json()
        body = created.json()
        assert body["subscription"]["plan"] == "pro" and body["subscription"]["status"] == "active"
        assert body["invoice"]["total"]["amount"] == PRO_MONTH
        again = partner_api.post(url, {"plan": "basic", "interval": "month"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "subscription_live"
    new = Subscription.objects.get(account=ended, ended_at=None)
    assert Invoice.objects.get(subscription=new).status == "paid"  # collected after the commit


def test_usage_keeps_the_periods_of_the_subscription_in_force_when_it_became_billable(ended):
    """Units of the ended subscription stay in its periods when re-evaluated after the start
    again; units of the new one go by its own anchor; a unit between the two falls in no closed
    period and is never billed."""
    ingest(ended, ticket("OLD", T0 + timedelta(days=9)), now=T0 + timedelta(days=9))
    with at():
        restart.subscription_restart(account=ended, plan_code="pro", interval="month")
    gap, later = END + timedelta(days=1), BACK + timedelta(days=6)
    ingest(ended, ticket("GAP", gap), now=BACK + timedelta(hours=1))  # sent late
    ingest(ended, ticket("NEW", later), now=later)
    # A late reply to the old ticket re-evaluates it after the start again.
    late_reply = ticket("OLD", T0 + timedelta(days=11))[1:]
    late_reply[0]["id"] = "OLD-late"
    ingest(ended, late_reply, now=later + timedelta(hours=2))
    periods_of = dict(
        Charge.objects.filter(account=ended, meter="helpdesk_tickets").values_list(
            "subject", "period_start"
        )
    )
    assert periods_of["OLD"] == T0  # the ended subscription's Nov 1 – Nov 30
    assert periods_of["NEW"] == BACK  # the new cycle's first usage period
    assert periods_of["GAP"] < BACK and periods_of["GAP"] != T0  # closed by neither


def test_partners_are_told_of_the_end_and_of_the_start_again(account, partner):  # noqa: F811
    endpoint_create(partner=partner, url="https://hooks.partner.example/billing")
    with at(MID):
        changes.subscription_cancel_at_period_end(account=account)
    billing_at(END)
    with at():
        restart.subscription_restart(account=account, plan_code="pro", interval="month")
    told = list(Event.objects.filter(account=account).order_by("sequence"))
    ended = next(e for e in told if e.type == "subscription.ended")
    assert ended.data == {
        "account": "shop",
        "subscription": {"status": "canceled", "billing_channel": "stripe"},
        "reason": "canceled at the end of the cycle",
        "shopify": None,  # a card account (docs/shopify.md: the payloads carry the channel)
    }
    assert [(e.type, e.data.get("invoice", {}).get("reason")) for e in told] == [
        ("invoice.finalized", "period_close"),  # the last usage period
        ("invoice.paid", "period_close"),  # nothing over the allowance: $0, paid at issue
        ("subscription.ended", None),
        *[("entitlement.changed", None)] * 3,  # switched off
        ("invoice.finalized", "subscription_start"),  # the new cycle's fee
        *[("entitlement.changed", None)] * 3,  # switched on
        ("subscription.changed", None),
    ]
