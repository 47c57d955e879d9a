"""Every change of billing state is audited once, naming who acted (issue 23, item 3).

The walk: each case goes in through the edge that a person or the system uses (the merchant's
Billing & Usage page, the partner API, the operator console or the admin, a Celery task) and
asserts that the change leaves exactly one audit row of the expected action (not zero, not two),
naming that actor: the merchant user, the partner's key, the operator, or the system. A profiler
records every function that ran during the call, so each case also proves it reached the
services it names: a case cannot pass by taking another road.

What keeps the walk from being forgotten: every public function of the service modules
(SERVICE_MODULES) is either named by a case or listed in NOT_WALKED with the reason it writes no
row of its own (it only reads, it is pure, or it composes services the walk names). A new public
function fails `test_every_public_service_function_is_walked_or_excused` until it is put in one
or the other; a function that writes must get a case, which fails until it writes its row.
"""

import contextlib
import inspect
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import CodeType, ModuleType
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.db.models import Max
from django.test import Client
from rest_framework.test import APIClient

import accounts.services
import billing.actions
import billing.changes
import billing.closing.claim
import billing.closing.price
import billing.closing.rollover
import billing.closing.start
import billing.disputes
import billing.dunning
import billing.invoicing
import billing.payments
import billing.refunds
import billing.restart
import billing.run
import billing.shopify_billing
import billing.shopify_usage
import billing.shopify_webhooks
import billing.spike_guard
import billing.ticket_disputes
import billing.webhooks
import console.services
import metering.event_store
import metering.holds
import metering.services
import outbox.services
import plans.services
from accounts.models import Account, ApiKey, Membership
from audit.models import AuditEntry, Source
from billing import gateway, payments, tasks
from billing.models import Dunning, Invoice, PaymentAttempt, Refund
from billing.run import run_billing
from metering.models import UsageAnomaly, UsageDay, UsageHold
from outbox import delivery as outbox_delivery
from outbox.models import Delivery
from plans.models import ScheduledChange, Subscription
from tests.billing.test_disputes import dispute_event, stripe_dispute
from tests.billing.test_invoice_tax import DE_VALID_VAT, buyer, issue
from tests.billing.test_payments import DECLINED, OK, THREE_DS
from tests.billing.test_refunds import refund_event, stand_in_refund_fails
from tests.billing.test_statement import emails_sent
from tests.billing.test_ticket_disputes import ticket_events
from tests.billing.test_webhooks import deliver, intent_event
from tests.conftest import client_with_key
from tests.console.conftest import operators_group
from tests.metering.helpers import ingest
from tests.shopify.test_usage_records import (
    TOKEN,
    app_subscription,
    number,
    shopify_account,
    usage_statement,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # the shop opens; a 30-day cycle, Nov 1 → Dec 1
HALF = T0 + timedelta(days=15)  # when each case acts, unless it says otherwise
DEC1 = T0 + timedelta(days=30)

MERCHANT, PARTNER, OPERATOR, SYSTEM = (
    Source.MERCHANT,
    Source.PARTNER,
    Source.OPERATOR,
    Source.SYSTEM,
)

SERVICE_MODULES: tuple[ModuleType, ...] = (
    plans.services,
    billing.changes,
    billing.actions,
    billing.restart,
    billing.invoicing,
    billing.payments,
    billing.refunds,
    billing.disputes,
    billing.ticket_disputes,
    billing.spike_guard,
    billing.dunning,
    billing.closing.claim,
    billing.closing.start,
    billing.closing.rollover,
    billing.closing.price,
    billing.run,
    billing.webhooks,
    billing.shopify_billing,
    billing.shopify_usage,
    billing.shopify_webhooks,
    console.services,
    accounts.services,
    outbox.services,
)


# --- the world each case starts from --------------------------------------------------------


@dataclass
class World:
    """The shop (Basic, monthly, opened at T0, its first invoice issued and open: no card yet),
    its owner on the pages, its partner's key on the API, an operator in the console."""

    shop: Account
    invoice: Invoice
    owner: Any
    merchant: Client
    key: ApiKey
    partner: APIClient
    operator: Any
    console: Client
    standin: Any
    shopify: Any  # the Shopify stand-in (its clock set to the case's time by `given`)
    make_account: Callable[..., Account]
    made: dict[str, Any] = field(default_factory=dict)  # what `given` made for `call`

    def page(self, path: str, **data):
        """POST a Billing & Usage form as the owner, with its one-time token."""
        return self.merchant.post(path, {"form_token": uuid.uuid4().hex, **data})

    def api(self, method: str, path: str, data: dict | None = None):
        return getattr(self.partner, method)(f"/api/v1/{path}", data, format="json")

    def act(self, path: str, **data):
        """POST a console action's confirmation form as the operator."""
        form = {"form_token": uuid.uuid4().hex, "reason": "asked by the customer", **data}
        return self.console.post(f"/console/{path}/", form)

    def actor(self, source: str) -> tuple[int | None, str]:
        """(actor_id, actor) that the rows of a source must name."""
        return {
            MERCHANT: (self.owner.pk, self.owner.get_username()),
            PARTNER: (None, f"API key {self.key.prefix}"),
            OPERATOR: (self.operator.pk, self.operator.get_username()),
            SYSTEM: (None, ""),
        }[source]


@pytest.fixture
def world(
    make_account, stripe_standin, shopify_standin, partner, client, django_user_model, monkeypatch
) -> World:
    # Partner webhooks are recorded, never sent (no network in tests).
    monkeypatch.setattr(outbox_delivery, "http_post", lambda url, body, headers: 200)
    with time_machine.travel(T0, tick=False):
        shop = make_account(slug="shop", plan="basic")
        run_billing(as_of=T0)
    owner = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=owner, account=shop, role=Membership.Role.OWNER)
    client.force_login(owner)
    key, raw = accounts.services.api_key_create(partner=partner, name="walk")
    operator = django_user_model.objects.create_user(
        "olivia", email="olivia@ops.example", password="pw-operator-1", is_staff=True
    )
    operator.groups.add(operators_group())
    console_client = Client()
    console_client.force_login(operator)
    return World(
        shop=shop,
        invoice=Invoice.objects.get(account=shop),
        owner=owner,
        merchant=client,
        key=key,
        partner=client_with_key(raw),
        operator=operator,
        console=console_client,
        standin=stripe_standin,
        shopify=shopify_standin,
        make_account=make_account,
    )


# --- what cases need before they act ---------------------------------------------------------


def card(w: World, number: str = OK) -> None:
    """A card on file, saved without collecting anything."""
    payments.payment_method_set(account=w.shop, stripe_payment_method=w.standin.card(number))


def past_due(w: World) -> None:
    """The first invoice, declined an hour after T0: past due, retries and suspension due."""
    card(w, DECLINED)
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        payments.invoice_collect(invoice_id=w.invoice.pk)
    w.invoice.refresh_from_db()
    assert w.invoice.status == "past_due"


def waiting_for_the_bank(w: World) -> PaymentAttempt:
    """The first invoice's charge waits for 3-D Secure (F2)."""
    card(w, THREE_DS)
    payments.invoice_collect(invoice_id=w.invoice.pk)
    attempt = PaymentAttempt.objects.get(invoice=w.invoice)
    assert attempt.status == "requires_action"
    return attempt


def confirmed_at_the_bank(w: World) -> None:
    attempt = waiting_for_the_bank(w)
    w.standin.authenticate(attempt.stripe_payment_intent, success=True)
    w.made["attempt"] = attempt


def downgrade_scheduled(w: World) -> None:
    result = billing.changes.subscription_change(
        account=w.shop, request=billing.changes.ChangeRequest(plan="starter")
    )
    w.made["change"] = result.scheduled[0]


def end_scheduled(w: World) -> None:
    w.made["change"], _ = billing.changes.subscription_cancel_at_period_end(account=w.shop)


def ended(w: World) -> None:
    """Canceled at the end of the cycle, and the cycle closed: nothing is live."""
    end_scheduled(w)
    with time_machine.travel(DEC1, tick=False):
        run_billing(as_of=DEC1)
    assert not Subscription.objects.filter(account=w.shop, ended_at__isnull=True).exists()


def after_the_end(call: Callable[[World], Any]) -> Callable[[World], Any]:
    def later(w: World):
        with time_machine.travel(DEC1 + timedelta(days=2), tick=False):
            return call(w)

    return later


def endpoint(w: World) -> None:
    w.made["endpoint"], _ = outbox.services.endpoint_create(
        partner=w.shop.partner, url="https://hooks.example/in"
    )


def delivered_once(w: World) -> None:
    endpoint(w)
    outbox.services.outbox_emit(account_id=w.shop.pk, type="entitlement.changed", data={})
    w.made["delivery"] = Delivery.objects.get()


def edition_account(w: World) -> None:
    """A per-agent edition (its AI limits are the owner's to set, Z9), owned by the owner."""
    with time_machine.travel(T0, tick=False):
        team = w.make_account(slug="team", plan="professional", full_agents=4)
    Membership.objects.create(user=w.owner, account=team, role=Membership.Role.OWNER)


def suspended(w: World) -> None:
    past_due(w)
    plans.services.subscription_transition(
        subscription_id=w.invoice.subscription_id, to="suspended", reason="set up", at=HALF
    )


def paused(w: World) -> None:
    past_due(w)
    console.services.dunning_pause(
        invoice=w.invoice, until=HALF + timedelta(days=5), reason="set up"
    )


def held(w: World) -> None:
    past_due(w)
    Dunning.objects.filter(invoice=w.invoice).update(held_reason="over the spending cap")


def over_the_spending_cap(w: World) -> None:
    card(w)
    Subscription.objects.filter(account=w.shop).update(spending_cap_minor=1000)


def lost_answer(w: World) -> None:
    """An attempt recorded, never sent (the worker died before it claimed it): the sweep
    sends it once it is 5 minutes old."""
    card(w)
    method = payments.default_payment_method(w.shop.pk)
    assert method is not None
    PaymentAttempt.objects.create(
        invoice=w.invoice,
        number=1,
        trigger="automatic",
        idempotency_key=f"invoice-{w.invoice.pk}-attempt-1",
        amount_minor=6000,
        currency="USD",
        payment_method=method.stripe_id,
        created_at=HALF - timedelta(minutes=10),
    )


def locked_out(w: World) -> None:
    for _ in range(10):  # AXES_FAILURE_LIMIT
        Client().post(
            "/login/",
            {"username": w.owner.get_username(), "password": "wrong-guess"},
            REMOTE_ADDR="203.0.113.7",
        )


def superuser(w: World) -> None:
    """The admin's actions need the model's change permission: the operator is a superuser."""
    w.operator.is_superuser = True
    w.operator.save(update_fields=["is_superuser"])


def vat_to_give_back(w: World) -> None:
    """An invoice of the shop charged VAT while VIES had not confirmed its German VAT id; VIES
    has confirmed it since (docs/tax.md, "Operators: VAT given back")."""
    identity = {"country": "DE", "vat_id": DE_VALID_VAT, "tax_id_status": "pending"}
    shop = buyer(w.shop, **identity)
    w.made["vat_invoice"] = issue(shop, 10000, at=T0)
    buyer(shop, tax_id_status="valid", tax_id_checked_at=HALF)


def nothing(w: World) -> None:
    pass


# --- the Shopify channel (docs/shopify.md) ----------------------------------------------------

BLOOM = "bloom.myshopify.com"
CAPPED_MINOR = 50_000  # the $500.00 cap per 30 days that shopify_account approves


def bloom(w: World) -> Account:
    return Account.objects.get(slug="bloom")


def shopify_waiting(w: World) -> None:
    """Bloom pays through its shop; its app subscription waits for the merchant's approval on
    Shopify's page. The owner manages its billing too. Shopify's clock is the case's, a minute
    early: it ticks on from there while the case's clock stands still, so on a loaded machine
    what Shopify stamps a second later (the interval's start) must still not be after HALF,
    when the case acts (an upgrade at HALF must fall inside our cycle)."""
    w.shopify.clock(now=HALF - timedelta(minutes=1))
    account = shopify_account(w.shopify, approve=False, cap=CAPPED_MINOR)
    Membership.objects.create(user=w.owner, account=account, role=Membership.Role.OWNER)


def shopify_active(w: World) -> None:
    """The merchant approved it: Shopify bills Bloom, our 30-day subscription started."""
    shopify_waiting(w)
    row = app_subscription(bloom(w))
    w.shopify.approve(row.confirmation_url)
    billing.shopify_billing.shopify_refresh(shopify_subscription=row)
    assert Subscription.objects.filter(account=bloom(w), ended_at__isnull=True).exists()


def shopify_settled(w: World) -> None:
    """Active, and its first invoice (the fee, billed by Shopify's recurring charge) settled."""
    shopify_active(w)
    for invoice in Invoice.objects.filter(account=bloom(w), status="open"):
        payments.invoice_collect(invoice_id=invoice.pk)
    assert not Invoice.objects.filter(account=bloom(w), status="open").exists()


def usage_to_post(w: World, *, tickets: int) -> None:
    """Active, and a close's usage statement issued: `tickets` overage at $1.00 each."""
    shopify_active(w)
    w.made["statement"] = usage_statement(bloom(w), ("overage", tickets, 100))


def usage_held(w: World) -> None:
    """$600.00 of usage against the $500.00 cap: $500.00 posted, $100.00 held (P8)."""
    usage_to_post(w, tickets=600)
    payments.invoice_collect(invoice_id=w.made["statement"].pk)
    assert billing.shopify_usage.held_minor(bloom(w)) == 10_000


def usage_answer_lost(w: World) -> None:
    """Shopify took the usage record but its answer never came back: the record is unknown."""
    usage_to_post(w, tickets=40)
    w.shopify.fault("lose_answer", operation="appUsageRecordCreate")
    payments.invoice_collect(invoice_id=w.made["statement"].pk)
    record = w.made["statement"].usage_records.get()
    assert record.status == "unknown"


def shopify_says(act: Callable[[World], Any]) -> Callable[[World], Any]:
    """Something happens at Shopify (`act`); Shopify's webhooks then come into our webhook
    view, signed by the stand-in. The view hands processing to a task after the commit: the
    walk runs what was queued when the call returns."""

    def call(w: World):
        before = len(w.shopify.webhooks_settled())
        act(w)
        deliveries = w.shopify.webhooks_settled()[before:]
        assert deliveries, "Shopify sent no webhook"
        for delivery in deliveries:
            headers = {k: v for k, v in delivery["headers"].items() if k != "Content-Type"}
            response = Client().post(
                "/webhooks/shopify/",
                data=delivery["body"],
                content_type="application/json",
                headers=headers,
            )
            assert response.status_code == 200, response.content[:300]

    return call


def approved_at_shopify(w: World) -> str:
    """The merchant presses Approve on Shopify's page; returns where Shopify sends them."""
    return w.shopify.approve(app_subscription(bloom(w)).confirmation_url)


def back_from_shopify(w: World):
    back = urlsplit(approved_at_shopify(w))
    return w.merchant.get(f"{back.path}?{back.query}")


def cap_raised_at_shopify(w: World) -> None:
    w.shopify.raise_cap(number(app_subscription(bloom(w))), "1000.00")


def later_by(delta: timedelta, call: Callable[..., Any], *args: Any) -> Any:
    with time_machine.travel(HALF + delta, tick=False):
        return call(*args)


def sweep_later(w: World):
    """The collection sweep (its periodic task) 10 minutes on: a claim is stale after 5."""
    return later_by(timedelta(minutes=10), tasks.payment_collect_due)


def opened_on_shopify_by_api(w: World):
    w.shopify.clock(now=HALF)
    w.shopify.shop(BLOOM, TOKEN, "USD")
    body = {
        "slug": "bloom",
        "name": "Bloom Cosmetics",
        "billing_email": "billing@bloom.example",
        "currency": "USD",
        "plan": "basic",
        "billing_channel": "shopify",
        "shopify": {"shop_domain": BLOOM, "access_token": TOKEN},
    }
    return w.api("post", "accounts", body)


# --- the walk --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    source: str  # who acts: merchant, partner, operator or system
    action: str  # the audit row the change must leave, exactly once
    services: tuple[Callable, ...]  # each must run during `call`
    call: Callable[[World], Any]  # through the source's edge
    given: Callable[[World], Any] = nothing  # the state the call needs, before counting rows
    # (actor_id, actor) when not the source's usual one: a command on the shell names no person.
    actor: tuple[int | None, str] | None = None


def page_change(plan: str) -> Callable[[World], Any]:
    return lambda w: w.page("/billing/shop/change/", plan=plan)


def api_change(plan: str) -> Callable[[World], Any]:
    return lambda w: w.api("post", "accounts/shop/subscription/changes", {"plan": plan})


def undo_on_page(w: World):
    return w.page(f"/billing/shop/changes/{w.made['change'].pk}/cancel")


def undo_on_api(w: World):
    return w.api("delete", f"accounts/shop/subscription/changes/{w.made['change'].pk}")


def saved_on_page(w: World):
    # Stripe.js hands the page a SetupIntent; the stand-in's card is what it would carry.
    method = w.standin.card(OK)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gateway, "setup_intent_payment_method", lambda setup_intent: method)
        return w.page(
            "/billing/shop/payment-method/save",
            setup_intent="seti_walk",
            terms_version=settings.TERMS_VERSION,
        )


def link_again(call: Callable[[World], Any]) -> Callable[[World], Any]:
    """The link may be emailed again 10 minutes after the last one (wall clock)."""

    def later(w: World):
        with time_machine.travel(HALF + timedelta(minutes=11), tick=False):
            return call(w)

    return later


def opened_by_api(w: World):
    body = {
        "slug": "bloom",
        "name": "Bloom & Co",
        "billing_email": "billing@bloom.example",
        "plan": "pro",
        "interval": "month",
    }
    return w.api("post", "accounts", body)


def paid(w: World) -> None:
    """The first invoice ($60.00) charged to the card."""
    card(w)
    payments.invoice_collect(invoice_id=w.invoice.pk)
    w.invoice.refresh_from_db()
    assert w.invoice.status == "paid"


def refund_in_console(w: World):
    return w.act(
        f"invoices/{w.invoice.pk}/credit", amount="30.00", refund="20.00", description="Outage"
    )


def paid_and_refunds_allowed(w: World) -> None:
    """The first invoice paid, and the partner's key allowed to refund (`refunds:write`)."""
    paid(w)
    ApiKey.objects.filter(pk=w.key.pk).update(scopes=["read", "write", "refunds:write"])


def refund_by_api(w: World):
    body = {"amount": 3000, "refund": 2000, "reason": "Outage on 3 November"}
    return w.api("post", f"invoices/{w.invoice.pk}/credit-notes", body)


def refund_recorded(w: World) -> None:
    """A paid invoice credited with a refund that was recorded, never sent (the process died
    after the credit note's commit): the sweep sends it once it is 5 minutes old."""
    paid(w)
    with mock.patch("billing.refunds._send_after_commit"):
        billing.invoicing.credit_note_issue(
            invoice=w.invoice,
            amount_minor=2000,
            description="Outage",
            refund_minor=2000,
            at=HALF - timedelta(minutes=10),
        )


def refund_failed_at_the_bank(w: World) -> None:
    paid(w)
    billing.invoicing.credit_note_issue(
        invoice=w.invoice, amount_minor=2000, description="Outage", refund_minor=2000
    )
    (refund,) = Refund.objects.all()
    billing.refunds.refund_send(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    # localstripe never fails a refund itself: its own update route stands in for the bank.
    stand_in_refund_fails(w.standin, refund.stripe_refund_id)
    w.made["refund"] = refund


def refund_webhook(w: World):
    return deliver(Client(), refund_event("evt_refund_walk", "refund.failed", w.made["refund"]))


def dispute_webhook(w: World):
    """Stripe says the first invoice's charge is disputed (read back through the gateway: a
    recorded-shape dispute stands in for Stripe's, which localstripe lacks)."""
    held = stripe_dispute(w.invoice.attempts.get())
    # The processing the view queues after its commit runs inside the stand-in's block.
    with (
        mock.patch.object(gateway, "dispute_get", lambda **_: gateway.dispute_state(held)),
        emails_sent(),
    ):
        return deliver(Client(), dispute_event("evt_dispute_walk", "created", held))


def dispute_lost(w: World) -> None:
    """The first invoice, paid, then its card dispute lost: owed again, waiting for a decision."""
    paid(w)
    attempt = w.invoice.attempts.get()
    state = gateway.dispute_state(stripe_dispute(attempt, status="lost"))
    w.made["dispute"] = billing.disputes.dispute_apply(attempt=attempt, state=state, at=HALF)


def billing_task(at: datetime) -> Callable[[World], Any]:
    """The periodic task (beat) as of `at`; what it queues runs (eager tasks, on commit)."""

    def run(w: World):
        with time_machine.travel(at, tick=False):
            return tasks.run_billing_task(at.isoformat())

    return run


def a_new_account(w: World) -> None:
    w.make_account(slug="fresh", plan="basic")


def webhook_succeeded(w: World):
    event = intent_event("evt_walk", "payment_intent.succeeded", w.made["attempt"])
    return deliver(Client(), event)


def confirmed_on_the_secure_page(w: World):
    return Client().post(payments.confirmation_path(w.made["attempt"]))


LOOP = "loop@vendor.example"


def ticket_billed(w: World) -> None:
    """Ticket T-1, an email from a vendor's auto-responder answered by an agent: billed."""
    when = HALF - timedelta(hours=2)
    ingest(w.shop, ticket_events("T-1", when, requester=LOOP), now=when)


def ticket_contested(w: World) -> None:
    """T-1 billed, and contested by the merchant: waiting in the operators' queue."""
    ticket_billed(w)
    w.made["ticket_dispute"] = billing.ticket_disputes.ticket_dispute_open(
        account=w.shop, ticket="T-1", reason="test", comment="Our QA's test"
    )


def contested_as_spam_then_flagged(w: World) -> None:
    """T-1 contested as spam with no proof yet; the helpdesk flags it as spam afterwards."""
    ticket_billed(w)
    billing.ticket_disputes.ticket_dispute_open(account=w.shop, ticket="T-1", reason="spam")
    flag = {
        "id": "spam-1",
        "type": "ticket_updated",
        "ticket": "T-1",
        "changes": {"spam": True},
        "occurred_at": HALF - timedelta(minutes=5),
    }
    ingest(w.shop, [flag], now=HALF - timedelta(minutes=5))


def ticket_decided_in_console(action: str) -> Callable[[World], Any]:
    return lambda w: w.act(f"ticket-disputes/{w.made['ticket_dispute'].pk}/{action}")


def _held(w: World, reason: str, **hold) -> None:
    """T-1 billed, then held by the spike guard (and re-evaluated: its unit reads `held`)."""
    ticket_billed(w)
    subjects = sorted(
        metering.holds.holds_create({(w.shop.pk, "ticket", "T-1"): reason}, at=HALF, **hold)
    )
    metering.event_store.mark_for_reevaluation(subjects, now=HALF)
    metering.services.reevaluate(subjects=subjects, as_of=HALF)


def held_as_a_loop(w: World) -> None:
    _held(w, f"Suspected loop: more than 10 tickets from {LOOP} within 60 minutes.")


def held_by_a_spike(w: World) -> None:
    anomaly = UsageAnomaly.objects.create(
        account=w.shop,
        meter="helpdesk_tickets",
        day=HALF.date(),
        observed=400,
        baseline=40,
        spread=2,
        weeks=8,
        held=1,
        status="open",
        opened_at=HALF,
    )
    w.made["anomaly"] = anomaly
    _held(w, "Usage spike", meter="helpdesk_tickets", kind="anomaly", anomaly=anomaly)


def spike_decided_by_api(action: str) -> Callable[[World], Any]:
    return lambda w: w.api("post", f"accounts/shop/anomalies/{w.made['anomaly'].pk}/{action}")


def held_decided_on_page(decision: str, what: str) -> Callable[[World], Any]:
    """Release or Exclude on the Usage tab's "Held for review" card: the spike, or the loop's
    holds (their group's first hold)."""

    def post(w: World):
        if what == "anomaly":
            return w.page(
                "/billing/shop/usage/held", anomaly=w.made["anomaly"].pk, decision=decision
            )
        hold = UsageHold.objects.get(account=w.shop, kind="loop")
        return w.page("/billing/shop/usage/held", hold=hold.pk, decision=decision)

    return post


def held_decided_in_console(action: str, what: str) -> Callable[[World], Any]:
    def post(w: World):
        if what == "anomaly":
            return w.act(f"held-usage/spikes/{w.made['anomaly'].pk}/{action}")
        hold = UsageHold.objects.get(account=w.shop, kind="loop")
        return w.act(f"held-usage/loops/{hold.pk}/{action}")

    return post


def held_15_days_ago(w: World) -> None:
    """T-1 held as a loop 15 days ago, nobody decided: due for release."""
    with time_machine.travel(HALF - timedelta(days=15), tick=False):
        ticket_billed(w)
        subjects = sorted(
            metering.holds.holds_create(
                {(w.shop.pk, "ticket", "T-1"): "Suspected loop: more than 10 tickets."},
                at=HALF - timedelta(days=15),
            )
        )
        metering.event_store.mark_for_reevaluation(subjects, now=HALF - timedelta(days=15))
        metering.services.reevaluate(subjects=subjects, as_of=HALF - timedelta(days=15))


# Monday Dec 28 (the shop opened Nov 1: its 8 Mondays before are history), 13:00.
SPIKE_CHECKED = datetime(2026, 12, 28, 13, tzinfo=UTC)


def mondays_then_a_spike(w: World) -> None:
    """40 helpdesk tickets on each Monday since the shop opened, 400 on Monday Dec 28: a
    spike, in December's overage (Basic includes 300)."""
    for k in range(9):
        day = (SPIKE_CHECKED - timedelta(weeks=k)).date()
        UsageDay.objects.create(
            account=w.shop,
            period_start=datetime(day.year, day.month, 1, tzinfo=UTC),
            meter="helpdesk_tickets",
            day=day,
            status="final",
            units=400 if k == 0 else 40,
        )


def spike_check(w: World):
    with time_machine.travel(SPIKE_CHECKED, tick=False):
        return tasks.spike_guard_tick()


CASES: dict[str, Case] = {
    # The merchant, on the Billing & Usage page.
    "merchant releases a usage spike on the Usage tab": Case(
        MERCHANT,
        "usage.anomaly_released",
        (billing.spike_guard.anomaly_release, billing.spike_guard.holds_release),
        held_decided_on_page("release", "anomaly"),
        given=held_by_a_spike,
    ),
    "merchant excludes a usage spike on the Usage tab": Case(
        MERCHANT,
        "usage.anomaly_excluded",
        (billing.spike_guard.anomaly_exclude, billing.spike_guard.holds_exclude),
        held_decided_on_page("exclude", "anomaly"),
        given=held_by_a_spike,
    ),
    "merchant releases a loop's held tickets on the Usage tab": Case(
        MERCHANT,
        "usage.hold_released",
        (billing.spike_guard.holds_release,),
        held_decided_on_page("release", "loop"),
        given=held_as_a_loop,
    ),
    "merchant excludes a loop's held tickets on the Usage tab": Case(
        MERCHANT,
        "usage.hold_excluded",
        (billing.spike_guard.holds_exclude,),
        held_decided_on_page("exclude", "loop"),
        given=held_as_a_loop,
    ),
    "merchant changes the spike guard's settings on the Usage tab": Case(
        MERCHANT,
        "spike_guard.settings_changed",
        (billing.spike_guard.spike_guard_settings_save,),
        lambda w: w.page(
            "/billing/shop/usage/spike-guard",
            mode="alert_only",
            loop_tickets=25,
            loop_minutes=30,
            anomaly_multiplier=4,
            anomaly_margin=200,
        ),
    ),
    "merchant schedules a downgrade": Case(
        MERCHANT,
        "subscription.change_scheduled",
        (billing.changes.subscription_change,),
        page_change("starter"),
    ),
    "merchant upgrades": Case(
        MERCHANT,
        "subscription.upgraded",
        (
            billing.changes.subscription_change,
            billing.invoicing.invoice_issue,
            billing.invoicing.invoices_issue,
        ),
        page_change("pro"),
        given=card,
    ),
    "merchant cancels a scheduled change": Case(
        MERCHANT,
        "subscription.change_canceled",
        (billing.changes.scheduled_change_cancel,),
        undo_on_page,
        given=downgrade_scheduled,
    ),
    "merchant schedules the subscription's end": Case(
        MERCHANT,
        "subscription.cancel_scheduled",
        (billing.changes.subscription_cancel_at_period_end,),
        lambda w: w.page("/billing/shop/cancel-subscription"),
    ),
    "merchant undoes the end": Case(
        MERCHANT,
        "subscription.cancel_undone",
        (billing.changes.scheduled_change_cancel,),
        undo_on_page,
        given=end_scheduled,
    ),
    "merchant saves billing details": Case(
        MERCHANT,
        "account.billing_details",
        (accounts.services.account_billing_details_update,),
        lambda w: w.page(
            "/billing/shop/details/save", billing_email="ap@shop.example", company="Shop SAS"
        ),
    ),
    "merchant saves a card": Case(
        MERCHANT, "payment_method.saved", (payments.payment_method_set,), saved_on_page
    ),
    "merchant accepts the terms with the card": Case(
        MERCHANT, "terms.accepted", (accounts.services.terms_accept,), saved_on_page
    ),
    "merchant retries a payment": Case(
        MERCHANT,
        "payment_attempt.status",
        (payments.invoice_charge,),
        lambda w: w.page(f"/billing/shop/invoices/{w.invoice.pk}/retry"),
        given=lambda w: card(w, DECLINED),
    ),
    "merchant emails the confirmation link again": Case(
        MERCHANT,
        "email.sent",
        (payments.confirmation_link_resend,),
        link_again(lambda w: w.page(f"/billing/shop/invoices/{w.invoice.pk}/resend-link")),
        given=waiting_for_the_bank,
    ),
    "merchant sets the AI limits": Case(
        MERCHANT,
        "subscription.ai_limits",
        (plans.services.subscription_ai_limits_set,),
        lambda w: w.page("/billing/team/usage/ai-limits", at_limit="pause", monthly_limit="25"),
        given=edition_account,
    ),
    "merchant starts again": Case(
        MERCHANT,
        "subscription.started",
        (billing.restart.subscription_restart, plans.services.subscription_create),
        after_the_end(lambda w: w.page("/billing/shop/start/", plan="basic", interval="month")),
        given=lambda w: (card(w), ended(w)),
    ),
    "merchant contests a ticket from Why was this billed": Case(
        MERCHANT,
        "ticket_dispute.opened",
        (billing.ticket_disputes.ticket_dispute_open,),
        lambda w: w.page(
            "/billing/shop/usage/why/contest", ticket="T-1", reason="test", comment="QA"
        ),
        given=ticket_billed,
    ),
    "merchant contests a requester's tickets in bulk": Case(
        MERCHANT,
        "ticket_dispute.opened",
        (
            billing.ticket_disputes.ticket_disputes_open_bulk,
            billing.ticket_disputes.ticket_dispute_open,
        ),
        lambda w: w.page(
            "/billing/shop/usage/contest-bulk", requester=LOOP, reason="auto_reply_loop"
        ),
        given=ticket_billed,
    ),
    # The partner, through the API with its key.
    "partner contests a ticket": Case(
        PARTNER,
        "ticket_dispute.opened",
        (billing.ticket_disputes.ticket_dispute_open,),
        lambda w: w.api(
            "post", "accounts/shop/ticket-disputes", {"ticket": "T-1", "reason": "test"}
        ),
        given=ticket_billed,
    ),
    "partner contests a requester's tickets in bulk": Case(
        PARTNER,
        "ticket_dispute.opened",
        (
            billing.ticket_disputes.ticket_disputes_open_bulk,
            billing.ticket_disputes.ticket_dispute_open,
        ),
        lambda w: w.api(
            "post",
            "accounts/shop/ticket-disputes/bulk",
            {"requester": LOOP, "reason": "auto_reply_loop"},
        ),
        given=ticket_billed,
    ),
    "partner releases a usage spike": Case(
        PARTNER,
        "usage.anomaly_released",
        (billing.spike_guard.anomaly_release, billing.spike_guard.holds_release),
        spike_decided_by_api("release"),
        given=held_by_a_spike,
    ),
    "partner excludes a usage spike": Case(
        PARTNER,
        "usage.anomaly_excluded",
        (billing.spike_guard.anomaly_exclude, billing.spike_guard.holds_exclude),
        spike_decided_by_api("exclude"),
        given=held_by_a_spike,
    ),
    "partner releases tickets held as a loop": Case(
        PARTNER,
        "usage.hold_released",
        (billing.spike_guard.holds_release,),
        lambda w: w.api("post", "accounts/shop/held-usage/release", {"tickets": ["T-1"]}),
        given=held_as_a_loop,
    ),
    "partner excludes tickets held as a loop": Case(
        PARTNER,
        "usage.hold_excluded",
        (billing.spike_guard.holds_exclude,),
        lambda w: w.api("post", "accounts/shop/held-usage/exclude", {"tickets": ["T-1"]}),
        given=held_as_a_loop,
    ),
    "partner changes the spike guard's settings": Case(
        PARTNER,
        "spike_guard.settings_changed",
        (billing.spike_guard.spike_guard_settings_save,),
        lambda w: w.api("patch", "accounts/shop/spike-guard", {"mode": "alert_only"}),
    ),
    "partner opens an account": Case(
        PARTNER,
        "account.created",
        (plans.services.account_open, accounts.services.account_create),
        opened_by_api,
    ),
    "partner opens an account: its subscription": Case(
        PARTNER, "subscription.started", (plans.services.subscription_create,), opened_by_api
    ),
    "partner upgrades": Case(
        PARTNER,
        "subscription.upgraded",
        (billing.changes.subscription_change, billing.invoicing.invoice_issue),
        api_change("pro"),
    ),
    "partner schedules a downgrade": Case(
        PARTNER,
        "subscription.change_scheduled",
        (billing.changes.subscription_change,),
        api_change("starter"),
    ),
    "partner's change replaces a scheduled one": Case(
        PARTNER,
        "subscription.change_superseded",
        (billing.changes.subscription_change,),
        api_change("pro"),
        given=downgrade_scheduled,
    ),
    "partner cancels a scheduled change": Case(
        PARTNER,
        "subscription.change_canceled",
        (billing.changes.scheduled_change_cancel,),
        undo_on_api,
        given=downgrade_scheduled,
    ),
    "partner undoes the end": Case(
        PARTNER,
        "subscription.cancel_undone",
        (billing.changes.scheduled_change_cancel,),
        undo_on_api,
        given=end_scheduled,
    ),
    "partner saves a card": Case(
        PARTNER,
        "payment_method.saved",
        (payments.payment_method_set,),
        lambda w: w.api(
            "put", "accounts/shop/payment-method", {"stripe_payment_method": w.standin.card(OK)}
        ),
    ),
    "partner asserts its merchant accepted the terms with the card": Case(
        PARTNER,
        "terms.accepted",
        (accounts.services.terms_accept,),
        lambda w: w.api(
            "put", "accounts/shop/payment-method", {"stripe_payment_method": w.standin.card(OK)}
        ),
    ),
    "partner retries a payment": Case(
        PARTNER,
        "payment_attempt.status",
        (payments.invoice_charge,),
        lambda w: w.api("post", f"invoices/{w.invoice.pk}/retry"),
        given=lambda w: card(w, DECLINED),
    ),
    "partner emails the confirmation link again": Case(
        PARTNER,
        "email.sent",
        (payments.confirmation_link_resend,),
        link_again(lambda w: w.api("post", f"invoices/{w.invoice.pk}/confirmation-link")),
        given=waiting_for_the_bank,
    ),
    "partner starts again": Case(
        PARTNER,
        "subscription.started",
        (billing.restart.subscription_restart,),
        after_the_end(
            lambda w: w.api(
                "post", "accounts/shop/subscription", {"plan": "basic", "interval": "month"}
            )
        ),
        given=ended,
    ),
    "partner credits an invoice with a refund": Case(
        PARTNER,
        "invoice.credited",
        (billing.actions.invoice_credit, billing.invoicing.credit_note_issue),
        refund_by_api,
        given=paid_and_refunds_allowed,
    ),
    "partner refunds part of a credit to the card": Case(
        PARTNER,
        "refund.created",
        (billing.refunds.invoice_charges_refundable, billing.refunds.refunds_create),
        refund_by_api,
        given=paid_and_refunds_allowed,
    ),
    # Stripe's answer, recorded after the partner's commit: the system's row.
    "partner refunds: Stripe's answer is recorded after the commit": Case(
        SYSTEM,
        "refund.status",
        (billing.refunds.refund_send,),
        refund_by_api,
        given=paid_and_refunds_allowed,
    ),
    "partner registers a webhook endpoint": Case(
        PARTNER,
        "webhook_endpoint.created",
        (outbox.services.endpoint_create,),
        lambda w: w.api("post", "webhook-endpoints", {"url": "https://hooks.example/walk"}),
    ),
    "partner deletes a webhook endpoint": Case(
        PARTNER,
        "webhook_endpoint.deleted",
        (outbox.services.endpoint_delete,),
        lambda w: w.api("delete", f"webhook-endpoints/{w.made['endpoint'].public_id}"),
        given=endpoint,
    ),
    "partner replays a delivery": Case(
        PARTNER,
        "webhook_delivery.replayed",
        (outbox.services.delivery_replay,),
        lambda w: w.api("post", f"webhook-deliveries/{w.made['delivery'].public_id}/replay"),
        given=delivered_once,
    ),
    # An operator, in the console (each action's own row, and the change it makes) or the admin.
    "operator retries now": Case(
        OPERATOR,
        "operator.retry_now",
        (console.services.invoice_retry_now,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/retry"),
        given=past_due,
    ),
    "operator sends a reminder": Case(
        OPERATOR,
        "operator.remind_now",
        (console.services.invoice_remind_now,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/remind"),
        given=past_due,
    ),
    "operator pauses dunning": Case(
        OPERATOR,
        "operator.pause_dunning",
        (console.services.dunning_pause,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/pause", until="2026-11-25"),
        given=past_due,
    ),
    "operator resumes dunning": Case(
        OPERATOR,
        "operator.resume_dunning",
        (console.services.dunning_resume,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/resume"),
        given=paused,
    ),
    "operator marks paid": Case(
        OPERATOR,
        "operator.mark_paid",
        (console.services.invoice_mark_paid,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/mark-paid", reference="BANK-77"),
        given=past_due,
    ),
    "operator marks paid: the invoice is settled": Case(
        OPERATOR,
        "invoice.status",
        (billing.invoicing.invoice_settle, billing.invoicing.invoice_transition),
        lambda w: w.act(f"invoices/{w.invoice.pk}/mark-paid", reference="BANK-77"),
        given=past_due,
    ),
    "operator voids": Case(
        OPERATOR,
        "operator.void",
        (console.services.invoice_void,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/void"),
        given=past_due,
    ),
    "operator voids: the invoice is void": Case(
        OPERATOR,
        "invoice.status",
        (billing.invoicing.invoice_void, billing.invoicing.invoice_transition),
        lambda w: w.act(f"invoices/{w.invoice.pk}/void"),
        given=past_due,
    ),
    "operator marks uncollectible": Case(
        OPERATOR,
        "operator.mark_uncollectible",
        (console.services.invoice_mark_uncollectible,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/uncollectible"),
        given=past_due,
    ),
    "operator marks uncollectible: the invoice is written off": Case(
        OPERATOR,
        "invoice.status",
        (billing.invoicing.invoice_write_off,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/uncollectible"),
        given=past_due,
    ),
    "operator credits": Case(
        OPERATOR,
        "operator.credit_note",
        (console.services.invoice_credit,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/credit", amount="10.00", description="Goodwill"),
        given=past_due,
    ),
    "operator credits: the credit note is issued": Case(
        OPERATOR,
        "invoice.issued",
        (billing.invoicing.credit_note_issue,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/credit", amount="10.00", description="Goodwill"),
        given=past_due,
    ),
    "operator refunds part of a credit to the card": Case(
        OPERATOR,
        "refund.created",
        (
            console.services.invoice_credit,
            billing.refunds.invoice_charges_refundable,
            billing.refunds.refunds_create,
        ),
        refund_in_console,
        given=paid,
    ),
    # Stripe's answer, recorded after the operator's commit: the system's row.
    "operator refunds: Stripe's answer is recorded after the commit": Case(
        SYSTEM,
        "refund.status",
        (billing.refunds.refund_send,),
        refund_in_console,
        given=paid,
    ),
    "operator writes off an invoice whose card dispute was lost": Case(
        OPERATOR,
        "operator.dispute_decided",
        (console.services.dispute_decide, billing.invoicing.invoice_write_off),
        lambda w: w.act(f"disputes/{w.made['dispute'].pk}/write-off"),
        given=dispute_lost,
    ),
    "operator releases a hold": Case(
        OPERATOR,
        "operator.release_hold",
        (console.services.invoice_release_hold,),
        lambda w: w.act(f"invoices/{w.invoice.pk}/release-hold"),
        given=held,
    ),
    "operator gives back the VAT": Case(
        OPERATOR,
        "operator.vat_given_back",
        (console.services.invoice_vat_give_back,),
        lambda w: w.act(f"invoices/{w.made['vat_invoice'].pk}/vat-give-back"),
        given=vat_to_give_back,
    ),
    "operator suspends": Case(
        OPERATOR,
        "operator.suspend",
        (console.services.subscription_suspend,),
        lambda w: w.act(f"accounts/{w.shop.pk}/suspend"),
        given=past_due,
    ),
    "operator suspends: the subscription is suspended": Case(
        OPERATOR,
        "subscription.status",
        (plans.services.subscription_transition,),
        lambda w: w.act(f"accounts/{w.shop.pk}/suspend"),
        given=past_due,
    ),
    "operator reactivates": Case(
        OPERATOR,
        "operator.reactivate",
        (console.services.subscription_reactivate,),
        lambda w: w.act(f"accounts/{w.shop.pk}/reactivate"),
        given=suspended,
    ),
    "operator moves an account back to cards in the console": Case(
        OPERATOR,
        "operator.channel_change",
        (console.services.account_channel_change,),
        lambda w: w.act(f"accounts/{bloom(w).pk}/channel", to="stripe"),
        given=shopify_settled,
    ),
    "operator moves an account back to cards in the console: the channel changes": Case(
        OPERATOR,
        "account.billing_channel",
        (billing.shopify_billing.account_channel_change,),
        lambda w: w.act(f"accounts/{bloom(w).pk}/channel", to="stripe"),
        given=shopify_settled,
    ),
    "operator accepts a contested ticket": Case(
        OPERATOR,
        "operator.ticket_dispute_accepted",
        (console.services.ticket_dispute_decide, billing.ticket_disputes.ticket_dispute_accept),
        ticket_decided_in_console("accept"),
        given=ticket_contested,
    ),
    "operator accepts a contested ticket: the dispute is accepted": Case(
        OPERATOR,
        "ticket_dispute.accepted",
        (billing.ticket_disputes.ticket_dispute_accept,),
        ticket_decided_in_console("accept"),
        given=ticket_contested,
    ),
    "operator rejects a contested ticket": Case(
        OPERATOR,
        "operator.ticket_dispute_rejected",
        (console.services.ticket_dispute_decide, billing.ticket_disputes.ticket_dispute_reject),
        ticket_decided_in_console("reject"),
        given=ticket_contested,
    ),
    "operator rejects a contested ticket: the dispute is rejected": Case(
        OPERATOR,
        "ticket_dispute.rejected",
        (billing.ticket_disputes.ticket_dispute_reject,),
        ticket_decided_in_console("reject"),
        given=ticket_contested,
    ),
    "operator releases a usage spike": Case(
        OPERATOR,
        "operator.usage_released",
        (console.services.held_anomaly_decide, billing.spike_guard.anomaly_release),
        held_decided_in_console("release", "anomaly"),
        given=held_by_a_spike,
    ),
    "operator releases a usage spike: the spike is released": Case(
        OPERATOR,
        "usage.anomaly_released",
        (billing.spike_guard.anomaly_release, billing.spike_guard.holds_release),
        held_decided_in_console("release", "anomaly"),
        given=held_by_a_spike,
    ),
    "operator excludes a loop's held tickets": Case(
        OPERATOR,
        "operator.usage_excluded",
        (console.services.held_loop_decide, billing.spike_guard.holds_exclude),
        held_decided_in_console("exclude", "loop"),
        given=held_as_a_loop,
    ),
    "operator excludes a loop's held tickets: the hold is excluded": Case(
        OPERATOR,
        "usage.hold_excluded",
        (billing.spike_guard.holds_exclude,),
        held_decided_in_console("exclude", "loop"),
        given=held_as_a_loop,
    ),
    "operator unlocks logins": Case(
        OPERATOR,
        "operator.unlock_logins",
        (console.services.member_logins_unlock,),
        lambda w: w.act(f"accounts/{w.shop.pk}/unlock-logins"),
        given=locked_out,
    ),
    "operator revokes a key in the admin": Case(
        OPERATOR,
        "api_key.revoked",
        (accounts.services.api_key_revoke,),
        lambda w: w.console.post(
            "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [w.key.pk]}
        ),
        given=superuser,
    ),
    # The system: the periodic tasks, the collection sweep, Stripe's webhooks, commands.
    "billing issues a first invoice": Case(
        SYSTEM,
        "invoice.issued",
        (
            billing.run.run_billing,
            billing.closing.start.subscription_start_invoice,
            billing.closing.start.start_invoice_issue,
            billing.invoicing.invoices_issue,
        ),
        billing_task(HALF),
        given=a_new_account,
    ),
    "billing closes a period": Case(
        SYSTEM,
        "invoice.issued",
        (billing.closing.claim.close_all, billing.closing.claim.periods_close),
        billing_task(DEC1),
    ),
    "billing applies a scheduled downgrade": Case(
        SYSTEM,
        "subscription.change_applied",
        (billing.closing.claim.close_all,),
        billing_task(DEC1),
        given=downgrade_scheduled,
    ),
    "billing ends a canceled subscription": Case(
        SYSTEM,
        "subscription.status",
        (billing.closing.claim.close_all, plans.services.subscription_transition),
        billing_task(DEC1),
        given=end_scheduled,
    ),
    "dunning suspends after two weeks unpaid": Case(
        SYSTEM,
        "subscription.status",
        (billing.dunning.dunning_run, plans.services.subscription_transition),
        billing_task(HALF),
        given=past_due,
    ),
    "the sweep charges an issued invoice": Case(
        SYSTEM,
        "payment_attempt.status",
        (payments.invoice_collect, payments.invoice_charge),
        lambda w: tasks.payment_collect_invoice(w.invoice.pk),
        given=card,
    ),
    "the sweep holds an invoice over the spending cap": Case(
        SYSTEM,
        "invoice.held",
        (payments.invoice_collect,),
        lambda w: tasks.payment_collect_invoice(w.invoice.pk),
        given=over_the_spending_cap,
    ),
    "the sweep sends an attempt a dead worker left": Case(
        SYSTEM,
        "payment_attempt.status",
        (billing.run.collect_due, payments.attempts_reconcile),
        lambda w: tasks.payment_collect_due(),
        given=lost_answer,
    ),
    "the sweep sends a refund a dead process left": Case(
        SYSTEM,
        "refund.status",
        (billing.run.collect_due, billing.refunds.refunds_reconcile),
        lambda w: tasks.payment_collect_due(),
        given=refund_recorded,
    ),
    "a Stripe webhook says a charge is disputed": Case(
        SYSTEM,
        "dispute.created",
        (
            billing.webhooks.stripe_event_process,
            billing.disputes.dispute_changed,
            billing.disputes.dispute_apply,
        ),
        dispute_webhook,
        given=paid,
    ),
    "the periodic task releases units held 14 days with no decision": Case(
        SYSTEM,
        "usage.hold_released",
        (
            billing.spike_guard.spike_guard_tick,
            billing.spike_guard.holds_release_due,
            billing.spike_guard.holds_release,
        ),
        lambda w: tasks.spike_guard_tick(),
        given=held_15_days_ago,
    ),
    "the periodic task holds a usage spike": Case(
        SYSTEM,
        "usage.anomaly_opened",
        (billing.spike_guard.spike_guard_tick, billing.spike_guard.anomalies_check),
        spike_check,
        given=mondays_then_a_spike,
    ),
    "the periodic task accepts a contested ticket the helpdesk flagged as spam": Case(
        SYSTEM,
        "ticket_dispute.accepted",
        (
            billing.ticket_disputes.ticket_disputes_auto_resolve,
            billing.ticket_disputes.ticket_dispute_accept,
        ),
        lambda w: tasks.ticket_disputes_auto_resolve(),
        given=contested_as_spam_then_flagged,
    ),
    "a Stripe webhook says a refund failed: account credit instead": Case(
        SYSTEM,
        "refund.credited",
        (billing.webhooks.stripe_event_process, billing.refunds.refund_changed),
        refund_webhook,
        given=refund_failed_at_the_bank,
    ),
    "a Stripe webhook settles a payment": Case(
        SYSTEM,
        "payment_attempt.status",
        (billing.webhooks.stripe_event_process, payments.payment_intent_changed),
        webhook_succeeded,
        given=confirmed_at_the_bank,
    ),
    # The customer's bank page is anonymous: what it records is Stripe's answer.
    "the secure page records the bank's answer": Case(
        SYSTEM,
        "payment_attempt.status",
        (payments.confirmation_completed,),
        confirmed_on_the_secure_page,
        given=confirmed_at_the_bank,
    ),
    "create_api_key makes a partner": Case(
        SYSTEM,
        "partner.created",
        (accounts.services.partner_get_or_create,),
        lambda w: call_command("create_api_key", "--partner", "Newcomer", stdout=Sink()),
    ),
    "create_api_key makes a key": Case(
        SYSTEM,
        "api_key.created",
        (accounts.services.api_key_create,),
        lambda w: call_command("create_api_key", "--partner", "Newcomer", stdout=Sink()),
    ),
    "create_api_key rotates a key": Case(
        SYSTEM,
        "api_key.rotated",
        (accounts.services.api_key_rotate,),
        lambda w: call_command("create_api_key", "--rotate", w.key.prefix, stdout=Sink()),
    ),
    "a store is connected": Case(
        SYSTEM,
        "integration.added",
        (accounts.services.store_create,),
        lambda w: accounts.services.store_create(
            account=w.shop, platform="shopify", name="Main store"
        ),
    ),
    "an integration is added": Case(
        SYSTEM,
        "integration.added",
        (accounts.services.integration_add,),
        lambda w: accounts.services.integration_add(
            account=w.shop, kind="email", name="Support inbox"
        ),
    ),
    # The Shopify channel: the merchant's pages, the partner API, Shopify's webhooks, the
    # collection sweep and the operator's command.
    "partner opens an account that pays through Shopify": Case(
        PARTNER,
        "shopify.subscription_requested",
        (billing.shopify_billing.shopify_subscribe,),
        opened_on_shopify_by_api,
    ),
    "merchant upgrades through Shopify": Case(
        MERCHANT,
        "shopify.subscription_requested",
        (billing.shopify_billing.shopify_change,),
        lambda w: w.page("/billing/bloom/change/", plan="pro"),
        given=shopify_active,
    ),
    "merchant comes back from approving at Shopify": Case(
        MERCHANT,
        "shopify.subscription_status",
        (
            billing.shopify_billing.shopify_return,
            billing.shopify_billing.shopify_refresh,
            billing.shopify_billing.shopify_sync,
        ),
        back_from_shopify,
        given=shopify_waiting,
    ),
    "merchant asks for a higher usage cap": Case(
        MERCHANT,
        "shopify_subscription.cap_requested",
        (billing.shopify_usage.cap_raise_request,),
        # The sweep asked when it held the usage; that link is offered again (no new request,
        # no row) for two days, after which the merchant's button asks Shopify anew.
        lambda w: later_by(timedelta(days=3), w.page, "/billing/bloom/shopify/cap-raise"),
        given=usage_held,
    ),
    "Shopify's webhook says the merchant approved": Case(
        SYSTEM,
        "shopify.subscription_status",
        (billing.shopify_webhooks.shopify_webhook_process, billing.shopify_billing.shopify_sync),
        shopify_says(approved_at_shopify),
        given=shopify_waiting,
    ),
    "Shopify's webhook says the cap was raised": Case(
        SYSTEM,
        "shopify.cap_changed",
        (billing.shopify_webhooks.shopify_webhook_process, billing.shopify_billing.shopify_sync),
        shopify_says(cap_raised_at_shopify),
        given=usage_held,
    ),
    "Shopify's webhook says the cap was raised: the held part is posted": Case(
        SYSTEM,
        "invoice.hold_cleared",
        (billing.shopify_usage.held_post,),
        shopify_says(cap_raised_at_shopify),
        given=usage_held,
    ),
    "Shopify's webhook says the app was uninstalled": Case(
        SYSTEM,
        "shopify.uninstalled",
        (
            billing.shopify_webhooks.shopify_webhook_process,
            billing.shopify_billing.shopify_uninstalled,
        ),
        shopify_says(lambda w: w.shopify.uninstall(BLOOM)),
        given=shopify_active,
    ),
    "the sweep posts a usage statement to Shopify": Case(
        SYSTEM,
        "invoice.status",
        (payments.invoice_charge, billing.shopify_usage.invoice_post),
        lambda w: tasks.payment_collect_invoice(w.made["statement"].pk),
        given=lambda w: usage_to_post(w, tickets=40),
    ),
    "the sweep holds usage over the approved cap": Case(
        SYSTEM,
        "invoice.held",
        (billing.shopify_usage.invoice_post,),
        lambda w: tasks.payment_collect_invoice(w.made["statement"].pk),
        given=lambda w: usage_to_post(w, tickets=600),
    ),
    "the sweep finds a usage record whose answer was lost": Case(
        SYSTEM,
        "usage_record.status",
        (billing.run.collect_due, billing.shopify_usage.usage_records_reconcile),
        sweep_later,
        given=usage_answer_lost,
    ),
    "operator moves an account back to cards": Case(
        OPERATOR,
        "account.billing_channel",
        (billing.shopify_billing.account_channel_change,),
        lambda w: call_command(
            "billing_channel_change", "bloom", "--to", "stripe", "--reason", "asked", stdout=Sink()
        ),
        given=shopify_settled,
        actor=(None, ""),
    ),
}


class Sink:
    """A command's output, not needed here."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


# Public functions of the service modules that write no audit row of their own, and why. A
# function that `composes` others is excused only if the walk names each of them.
READS = "reads only"
ENTITLEMENTS = "announces an entitlement's state, which metering.limits audits"
PURE = "computes a value, writes nothing"


@dataclass(frozen=True)
class Composes:
    """Writes only through these services (each walked by a case)."""

    services: tuple[Callable, ...]


NOT_WALKED: dict[Callable, str | Composes] = {
    plans.services.resolve_offer: READS,
    plans.services.resolve_tiers: READS,
    plans.services.sold_currencies: READS,
    billing.changes.plan_for_sale: READS,
    billing.changes.subscription_change_preview: READS,
    billing.changes.terms_words: PURE,
    billing.restart.subscription_restart_preview: READS,
    billing.invoicing.amount_due: READS,
    billing.invoicing.refuse_while_in_flight: READS,
    # A credit note's effect on its invoice: the status moves and settlements it makes are
    # audited by the services it calls; the note itself by credit_note_issue's invoices_issue.
    billing.invoicing.credit_note_apply: Composes(
        (billing.invoicing.invoice_transition, billing.invoicing.invoice_settle)
    ),
    billing.closing.claim.vat_ids_recheck_before_issue: (
        "stores VIES's answer on the account (billing.tax_checks): the evidence of a VAT id's "
        "status, kept on the row with its date and consultation number, not a change a person made"
    ),
    payments.attempt_from_token: READS,
    billing.refunds.card_words: READS,
    billing.refunds.note_refund_minor: READS,
    payments.collectable_invoice_ids: READS,
    payments.collectable_invoices: READS,
    payments.confirmation_attempt: READS,
    payments.confirmation_path: PURE,
    payments.confirmation_url: PURE,
    payments.default_payment_method: READS,
    payments.period_charged_minor: READS,
    accounts.services.login_record: (
        "keeps one successful login (the user_logged_in signal): the login history is the "
        "record of its own, evidence for card disputes, not a change anyone decides"
    ),
    accounts.services.login_records_prune: (
        "forgets logins past their 400-day retention (a daily task): housekeeping of that "
        "history, as partitions past theirs are archived"
    ),
    payments.customer_ensure: (
        "links the account to its Stripe customer on first need: an id made once and never "
        "changed, no one's decision (shown on the account)"
    ),
    billing.closing.price.final_units: READS,
    billing.closing.price.final_units_statement: READS,
    billing.closing.price.close_histories: READS,
    billing.closing.price.late_histories: READS,
    billing.closing.price.late_lookback: PURE,
    billing.spike_guard.busy_meters: READS,
    billing.closing.price.released_units: READS,
    billing.closing.price.units_by_period: READS,
    billing.webhooks.webhook_receive: (
        "stores Stripe's event as received (unique Stripe id, payload and time kept): the "
        "record of its own; processing it is stripe_event_process"
    ),
    billing.webhooks.stripe_events_retry: Composes((billing.webhooks.stripe_event_process,)),
    billing.actions.card_first: READS,
    billing.actions.refuse_card_on_shopify: READS,
    plans.services.shopify_offer_check: PURE,
    billing.actions.invoice_pay: Composes((payments.invoice_charge,)),
    billing.actions.outstanding_pay: Composes((payments.invoice_charge,)),
    billing.actions.confirmation_link_resend: Composes((payments.confirmation_link_resend,)),
    billing.actions.subscription_change: Composes((billing.changes.subscription_change,)),
    billing.actions.subscription_start_again: Composes((billing.restart.subscription_restart,)),
    billing.actions.scheduled_change_cancel: Composes((billing.changes.scheduled_change_cancel,)),
    billing.actions.subscription_cancel: Composes(
        (billing.changes.subscription_cancel_at_period_end,)
    ),
    billing.actions.ai_limits_set: Composes((plans.services.subscription_ai_limits_set,)),
    billing.actions.payment_method_save: Composes(
        (payments.payment_method_set, accounts.services.terms_accept)
    ),
    billing.spike_guard.spike_guard_settings: READS,
    billing.spike_guard.anomaly_words: PURE,
    billing.spike_guard.loops_notify: (
        "tells the merchant (one email) and partners of the loop holds made at ingest, and marks "
        "them told: the holds change no billing state until released or excluded (walked)"
    ),
    # Partners learn of a contested ticket in the transaction that files or decides it.
    billing.ticket_disputes.ticket_dispute_from_hold: Composes(
        (billing.ticket_disputes.ticket_dispute_accept,)
    ),
    outbox.services.usage_dispute_emit: Composes(
        (
            billing.ticket_disputes.ticket_dispute_open,
            billing.ticket_disputes.ticket_dispute_accept,
            billing.ticket_disputes.ticket_dispute_reject,
        )
    ),
    billing.shopify_billing.live_shopify_subscription: READS,
    billing.shopify_billing.return_url: PURE,
    billing.shopify_billing.usage_cap_minor: READS,
    billing.shopify_billing.usage_terms_words: PURE,
    billing.shopify_billing.recurring_minor: PURE,
    billing.shopify_billing.shopify_start_again: Composes(
        (billing.shopify_billing.shopify_subscribe,)
    ),
    # It asks Shopify to stop billing a subscription of ours that has ended; what Shopify
    # answers is applied by shopify_sync, which audits it.
    billing.shopify_billing.shopify_ended_cancel: Composes((billing.shopify_billing.shopify_sync,)),
    billing.shopify_usage.live_subscription: READS,
    billing.shopify_usage.held_minor: READS,
    billing.shopify_webhooks.shopify_webhook_receive: (
        "stores Shopify's webhook as received (unique webhook id, payload and time kept): the "
        "record of its own; processing it is shopify_webhook_process"
    ),
    billing.shopify_webhooks.shopify_webhooks_retry: Composes(
        (billing.shopify_webhooks.shopify_webhook_process,)
    ),
    console.services.operator_action: "the frame of the console's actions (walked), not one",
    accounts.services.api_key_authenticate: (
        "keeps last_used_at to the minute, on every request: bookkeeping, no state anyone changed"
    ),
    accounts.services.member_logins_unlock: (
        "forgets failed logins (django-axes), no billing state; the console's action records "
        "operator.unlock_logins"
    ),
    outbox.services.public_id: PURE,
    outbox.services.invoice_tax_data: PURE,
    outbox.services.outbox_emit: (
        "announces a change to partners in its caller's transaction; the caller audits it"
    ),
    outbox.services.outbox_emit_many: "announces changes to partners; the callers audit them",
    outbox.services.invoices_issued_emit: Composes((billing.invoicing.invoices_issue,)),
    outbox.services.invoice_status_emit: Composes((billing.invoicing.invoice_transition,)),
    outbox.services.invoice_dispute_emit: Composes((billing.disputes.dispute_apply,)),
    outbox.services.invoice_refund_emit: Composes((billing.refunds.refund_send,)),
    outbox.services.subscription_changed_emit: Composes((billing.changes.subscription_change,)),
    outbox.services.subscription_status_emit: Composes((plans.services.subscription_transition,)),
    outbox.services.threshold_reached_emit: "announces a threshold email (a ThresholdNotice row)",
    outbox.services.entitlement_changed_emit: ENTITLEMENTS,
    outbox.services.entitlements_resumed_emit: ENTITLEMENTS,
}


def qualified(function: Callable) -> str:
    return f"{function.__module__}.{function.__name__}"


def code_of(function: Callable) -> CodeType:
    # @transaction.atomic wraps a function: the code that runs is the wrapped one's.
    return inspect.unwrap(function).__code__


def public_functions() -> set[str]:
    return {
        f"{module.__name__}.{name}"
        for module in SERVICE_MODULES
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__ and not name.startswith("_")
    }


@contextlib.contextmanager
def functions_run() -> Iterator[set[CodeType]]:
    """The code of every Python function called in this thread within the block."""
    seen: set[CodeType] = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


def test_every_public_service_function_is_walked_or_excused():
    walked = {qualified(s) for case in CASES.values() for s in case.services}
    excused = {qualified(f) for f in NOT_WALKED}
    public = public_functions()
    assert sorted(public - walked - excused) == [], "add a case, or say why it writes no row"
    assert sorted((walked | excused) - public) == [], "names no public service function"
    assert sorted(walked & excused) == [], "walked and excused at once"
    for function, why in NOT_WALKED.items():
        if isinstance(why, Composes):
            assert {qualified(s) for s in why.services} <= walked, qualified(function)


@pytest.mark.parametrize("name", CASES)
def test_a_change_leaves_one_audit_row_naming_who_acted(
    world, name, django_capture_on_commit_callbacks
):
    case = CASES[name]
    with time_machine.travel(HALF, tick=False):
        case.given(world)
        mark = AuditEntry.objects.aggregate(last=Max("pk"))["last"] or 0
        with functions_run() as seen, django_capture_on_commit_callbacks(execute=True):
            response = case.call(world)
    status = getattr(response, "status_code", None)
    assert status is None or status < 400, getattr(response, "content", b"")[:300]
    missed = [qualified(s) for s in case.services if code_of(s) not in seen]
    assert missed == [], "the call did not reach these services"
    rows = AuditEntry.objects.filter(pk__gt=mark, action=case.action)
    assert [(row.source, row.actor_id, row.actor) for row in rows] == [
        (case.source, *(case.actor or world.actor(case.source)))
    ]


def test_asking_again_for_what_is_already_so_writes_no_second_row(world):
    """A state that does not change leaves no row: the second call finds the first one's."""
    with time_machine.travel(HALF, tick=False):
        for _ in range(2):
            world.page("/billing/shop/cancel-subscription")
        details = {"billing_email": "ap@shop.example", "company": "Shop SAS"}
        for _ in range(2):
            world.page("/billing/shop/details/save", **details)
        endpoint(world)
        for _ in range(2):
            world.api("delete", f"webhook-endpoints/{world.made['endpoint'].public_id}")
        for _ in range(2):
            accounts.services.api_key_revoke(key=world.key)
    counted = {
        action: AuditEntry.objects.filter(action=action).count()
        for action in (
            "subscription.cancel_scheduled",
            "account.billing_details",
            "webhook_endpoint.deleted",
            "api_key.revoked",
        )
    }
    assert counted == {
        "subscription.cancel_scheduled": 1,
        "account.billing_details": 1,
        "webhook_endpoint.deleted": 1,
        "api_key.revoked": 1,
    }
    assert ScheduledChange.objects.filter(cancel=True).count() == 1
