"""The merchant's Billing & Usage page on the Shopify channel: "Paid through Shopify" with
Shopify's status in words and what to do, the approved cap per 30 days, the balance used this
interval, what is held over the cap (P8) and the approval links; no card form or card button
anywhere; agents see it all and can act on nothing."""

import re
from datetime import timedelta

import pytest
import time_machine

from billing.models import Invoice, ShopifyStatus, ShopifySubscription, ShopifyUsageRecord
from tests.shopify import flows
from tests.shopify.surfaces import CLOSE, LATER, T0, close_over_the_cap, make_shopify

CARD_WORDS = ("Retry payment", "Confirm payment", "Pay all outstanding", "Add a card", "Save card")


@pytest.fixture
def shop(make_account, shopify_standin):
    return make_shopify(make_account, shopify_standin)


@pytest.fixture
def account(shop):
    """The conftest's members (owner, teammate) join this account."""
    return shop[0]


@pytest.fixture
def app(shop):
    return shop[1]


@pytest.fixture
def as_owner(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def as_agent(client, teammate):
    client.force_login(teammate)
    return client


def page(client, path: str = "", *, at=LATER) -> str:
    with time_machine.travel(at, tick=False):
        response = client.get(f"/billing/shop/{path}")
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def no_card_buttons(html: str) -> None:
    for words in CARD_WORDS:
        assert words not in html, words
    assert "stripe" not in html.lower()


def test_active_cap_balance_and_the_cycle_every_30_days(as_owner, account, app):
    html = page(as_owner, at=T0 + timedelta(days=10))
    assert "Paid through Shopify" in html and "shop.myshopify.com" in html
    assert '<span class="badge ok">Active</span>' in html
    assert "<strong>$10,000.00</strong> per 30 days" in html  # the approved cap, 1,000,000 cents
    assert "<strong>$9,500.00</strong> of $10,000.00 · $500.00 left" in html
    assert 'aria-valuenow="950000"' in html and '<rect width="95"' in html
    assert "Billed every 30 days" in html and "per 30 days" in html
    assert "Nov 1 – Nov 30, 2026" in html  # this Shopify interval, its last day included
    assert "Nothing is held over your cap." in html and "$0.00 <span" not in html
    no_card_buttons(html)


def test_held_over_the_cap_is_shown_with_the_approval_link(as_owner, account, app):
    close_over_the_cap(account, app)
    app.cap_confirmation_url = "https://shop.myshopify.com/admin/charges/11/confirm_update?x=1"
    app.cap_requested_minor = 2_000_000
    app.save()
    html = page(as_owner)
    assert "$300.00 held over your approved cap" in html
    assert (
        '<a class="button" href="https://shop.myshopify.com/admin/charges/11/confirm_update?x=1">'
        "Approve a higher cap in Shopify</a>" in html
    )
    assert "($20,000.00 per 30 days)" in html
    assert "<strong>$500.00</strong> of $10,000.00" in html  # the posted part, new interval
    no_card_buttons(html)


def test_approaching_the_cap_is_said_only_in_its_interval_and_until_a_raise(as_owner, account, app):
    app.approaching_cap_at = T0 + timedelta(days=20)
    app.save()
    assert "90 % of your approved usage cap" in page(as_owner, at=T0 + timedelta(days=21))
    app.capped_amount_minor = 2_000_000  # the merchant approved a higher cap: 47 % used
    app.save()
    assert "90 % of your approved usage cap" not in page(as_owner, at=T0 + timedelta(days=22))
    app.capped_amount_minor = 1_000_000
    app.current_period_end = CLOSE + timedelta(days=30)  # Shopify's next interval
    app.save()
    assert "90 % of your approved usage cap" not in page(as_owner, at=CLOSE + timedelta(days=1))


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (ShopifyStatus.FROZEN, "Shopify has frozen the app subscription: pay your Shopify bill"),
        (ShopifyStatus.CANCELLED, "your subscription ends at the end of its billing cycle"),
    ],
)
def test_frozen_and_cancelled_say_what_happens(as_owner, account, app, status, words):
    app.status = status
    app.save()
    html = page(as_owner, at=T0 + timedelta(days=3))
    assert words in html
    no_card_buttons(html)


def test_pending_links_to_shopify_approval(as_owner, account, app):
    app.status = ShopifyStatus.CANCELLED
    app.save()
    ShopifySubscription.objects.create(
        account=account,
        gid="gid://shopify/AppSubscription/12",
        name="Basic plan",
        status=ShopifyStatus.PENDING,
        currency="USD",
        confirmation_url="https://shop.myshopify.com/admin/charges/12/confirm?signature=s",
        capped_amount_minor=1_000_000,
        created_at=T0 + timedelta(days=1),
        updated_at=T0 + timedelta(days=1),
    )
    html = page(as_owner, at=T0 + timedelta(days=2))
    assert "Waiting for your approval in Shopify" in html
    assert (
        '<a class="button" href="https://shop.myshopify.com/admin/charges/12/confirm?signature=s">'
        "Approve the subscription in Shopify</a>" in html
    )


def test_invoices_are_usage_statements_with_shopify_record_ids(as_owner, account, app):
    invoice = close_over_the_cap(account, app)
    html = page(as_owner, "invoices/")
    assert "Usage statements and credit notes" in html and "not tax invoices" in html
    assert invoice.number in html
    assert "<strong>$500.00</strong> · Posted to Shopify" in html
    assert "(Shopify usage record 4021)" in html
    assert "<strong>$300.00</strong> · Held over your approved cap" in html
    no_card_buttons(html)


def test_the_card_page_says_there_is_no_card(as_owner, account, app):
    html = page(as_owner, "payment-method")
    assert "there is no card to add or update here" in html
    assert "setup_intent" not in html and 'id="card"' not in html
    with time_machine.travel(LATER, tick=False):
        saved = as_owner.post("/billing/shop/payment-method/save", {"setup_intent": "seti_x"})
    assert saved.status_code == 302
    with time_machine.travel(LATER, tick=False):
        shown = as_owner.get(saved["Location"]).content.decode()
    assert "This account pays through Shopify: there is no card" in shown


def test_plan_tab_offers_30_day_billing_only_and_says_why(as_owner, account, app):
    html = page(as_owner, "plan/", at=T0 + timedelta(days=3))
    assert "Shopify bills usage only on 30-day cycles" in html
    assert "Switch to yearly billing" not in html and "/ year" not in html
    assert '$60.00<span class="muted small"> / 30 days' in html
    assert "tickets per 30 days" in html and "tickets a month" not in html
    addons = page(as_owner, "add-ons/", at=T0 + timedelta(days=3))
    assert "/ 30 days," in addons and "included per 30 days" in addons and "/ month" not in addons


def test_an_agent_sees_the_figures_and_no_button(as_agent, account, app):
    close_over_the_cap(account, app)
    app.cap_confirmation_url = "https://shop.myshopify.com/admin/charges/11/confirm_update?x=1"
    app.save()
    html = page(as_agent)
    assert "$300.00 held over your approved cap" in html and "$10,000.00" in html
    assert "Approve a higher cap in Shopify" not in html
    assert "An owner or admin of the account approves a higher cap in Shopify." in html


def test_a_card_account_shows_no_shopify_panel(client, make_account, django_user_model):
    from accounts.models import Membership

    with time_machine.travel(T0, tick=False):
        card = make_account(slug="cards")
    user = django_user_model.objects.create_user("o@cards.example", password="pw-cards-123")
    Membership.objects.create(user=user, account=card, role=Membership.Role.OWNER)
    client.force_login(user)
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        html = client.get("/billing/cards/").content.decode()
    assert "Paid through Shopify" not in html and "Payment method" in html


# --- the merchant's buttons, on the stand-in ------------------------------------------------


def owner_of(account, client, django_user_model):
    from accounts.models import Membership

    user = django_user_model.objects.create_user(
        f"owner@{account.slug}.example", password="pw-owner-123"
    )
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    client.force_login(user)
    return client


def form_post(client, page_path: str, action: str):
    """POST the page's form for `action` with its one-time token, as the browser would."""
    html = client.get(page_path).content.decode()
    token = re.search(
        rf'action="{re.escape(action)}">.*?name="form_token" value="([^"]+)"', html, re.S
    )
    assert token, f"no form for {action}"
    return client.post(action, {"form_token": token[1]})


def test_declined_subscription_is_asked_for_again(
    client, django_user_model, shopify_standin, catalog
):
    account = flows.open_account(shopify_standin)
    declined = flows.newest(account)
    before = flows.sent(shopify_standin)
    shopify_standin.decline(declined.confirmation_url)
    flows.deliver(shopify_standin, after=before)
    owner_of(account, client, django_user_model)
    html = client.get("/billing/bloom/").content.decode()
    assert "Declined in Shopify" in html and "ask for it again" in html
    answer = form_post(client, "/billing/bloom/", "/billing/bloom/shopify/ask-again")
    again = flows.newest(account)
    assert again.pk != declined.pk and again.status == ShopifyStatus.PENDING
    assert answer.status_code == 302 and answer["Location"] == again.confirmation_url
    assert again.name == declined.name  # the same plan, asked again
    html = client.get("/billing/bloom/").content.decode()
    assert "Approve the subscription in Shopify" in html and again.confirmation_url in html


def test_held_usage_without_a_pending_raise_asks_shopify_for_one(
    client, django_user_model, shopify_standin, catalog
):
    account = flows.active_account(shopify_standin)
    app = flows.newest(account)
    invoice = Invoice.objects.filter(account=account).first()
    line = invoice.lines.first()
    # What the usage path leaves when the cap is full and the merchant declined a raise.
    ShopifyUsageRecord.objects.create(
        invoice=invoice,
        line=line,
        part=1,
        shopify_subscription=app,
        idempotency_key="usage:test:held",
        amount_minor=30_000,
        currency="USD",
        description="Billable tickets over your allowance",
        status="held",
        created_at=app.activated_at,
    )
    owner_of(account, client, django_user_model)
    html = client.get("/billing/bloom/").content.decode()
    assert "$300.00 held over your approved cap" in html
    assert "Approve a higher cap in Shopify" not in html
    answer = form_post(client, "/billing/bloom/", "/billing/bloom/shopify/cap-raise")
    app.refresh_from_db()
    assert app.cap_confirmation_url and answer["Location"] == app.cap_confirmation_url
    assert app.cap_requested_minor and app.cap_requested_minor > app.capped_amount_minor


def test_an_agent_cannot_ask_shopify_for_anything(
    client, django_user_model, shopify_standin, catalog
):
    from accounts.models import Membership

    account = flows.active_account(shopify_standin)
    agent = django_user_model.objects.create_user("agent@bloom.example", password="pw-agent-123")
    Membership.objects.create(user=agent, account=account, role=Membership.Role.AGENT)
    client.force_login(agent)
    for action in ("ask-again", "cap-raise"):
        assert client.post(f"/billing/bloom/shopify/{action}").status_code == 403
    assert flows.newest(account).cap_confirmation_url == ""
