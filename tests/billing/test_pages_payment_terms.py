"""Saving a card is authorising us to charge it under the Terms of Service (issue 26, card
disputes' evidence): the Payment method page asks for a ticked box above "Save card", refuses
without it (nothing saved, a message saying what to do), and records the acceptance with the
card; a partner's PUT records one under its key."""

import re
from unittest import mock

import pytest
from django.utils.html import strip_tags

from accounts.models import ApiKey, TermsAcceptance
from audit.models import AuditEntry
from billing import gateway
from billing.models import PaymentMethod
from tests.billing.pages_fixtures import account, at  # noqa: F401
from tests.billing.test_payments import OK

HOME = "203.0.113.7"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAVE = "/billing/shop/payment-method/save"


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def terms(settings):
    settings.TERMS_VERSION = "2026-11"
    settings.TERMS_URL = "https://billing.example/terms/2026-11"


def words(html: str) -> str:
    return re.sub(r"\s+", " ", strip_tags(html))


def save(client, stripe_standin, **form):
    """Post the card form as Stripe.js leaves it (the SetupIntent's card is the stand-in's)."""
    method = stripe_standin.card(OK)
    with mock.patch.object(gateway, "setup_intent_payment_method", return_value=method) as read:
        done = client.post(
            SAVE,
            {"setup_intent": "seti_x", **form},
            REMOTE_ADDR=HOME,
            HTTP_USER_AGENT=FIREFOX,
            follow=True,
        )
    return done, read


def test_the_page_asks_for_the_authorisation_above_save_card(logged_in, stripe_standin, terms):
    html = logged_in.get("/billing/shop/payment-method").content.decode()
    assert (
        "By saving this card you authorise Helpdesk Billing Inc. to charge it for this "
        "account's invoices under the Terms of Service (version 2026-11, "
        "https://billing.example/terms/2026-11)."
    ) in words(html)
    assert 'href="https://billing.example/terms/2026-11"' in html
    assert re.search(
        r'<input type="checkbox" name="terms_version" value="2026-11"[^>]*required', html
    )
    assert html.index('name="terms_version"') < html.index(">Save card</button>")


def test_without_the_box_ticked_nothing_is_saved_and_the_page_says_why(
    logged_in, stripe_standin, terms
):
    done, read = save(logged_in, stripe_standin)
    assert done.status_code == 200
    assert done.redirect_chain[-1][0] == "/billing/shop/payment-method"
    assert (
        "The card was not saved: tick the box authorising us to charge it under the Terms of "
        "Service, then save it again."
    ) in done.content.decode()
    read.assert_not_called()  # the SetupIntent is not even read
    assert not PaymentMethod.objects.exists()
    assert not TermsAcceptance.objects.exists()


def test_terms_changed_since_the_page_was_shown_are_not_accepted_unread(
    logged_in, stripe_standin, terms
):
    done, _ = save(logged_in, stripe_standin, terms_version="2026-01")
    assert (
        "the Terms of Service changed (now version 2026-11) since the page was shown"
        in done.content.decode()
    )
    assert not PaymentMethod.objects.exists()
    assert not TermsAcceptance.objects.exists()


def test_with_the_box_ticked_the_card_is_saved_with_the_members_acceptance(
    logged_in, stripe_standin, terms, owner
):
    shown = words(logged_in.get("/billing/shop/payment-method").content.decode())
    with at():
        done, _ = save(logged_in, stripe_standin, terms_version="2026-11")
    assert "Saved: Visa •••• 4242. It is used for the next payments." in done.content.decode()
    card = PaymentMethod.objects.get()
    acceptance = TermsAcceptance.objects.get()
    assert (acceptance.account.slug, acceptance.source, acceptance.user) == (
        "shop",
        "merchant_page",
        owner,
    )
    assert acceptance.accepted_by == "owner@shop.example"
    assert acceptance.version == "2026-11"
    assert acceptance.text in shown  # the exact words next to the box
    assert acceptance.card == f"Visa •••• 4242 ({card.stripe_id})"
    assert (acceptance.ip_address, acceptance.user_agent) == (HOME, FIREFOX)
    row = AuditEntry.objects.get(action="terms.accepted")
    assert (row.source, row.actor, row.account_id) == (
        "merchant",
        "owner@shop.example",
        card.account_id,
    )
    assert row.after["version"] == "2026-11"


def test_a_card_stripe_refuses_leaves_no_acceptance(logged_in, stripe_standin, terms):
    done = logged_in.post(
        SAVE, {"setup_intent": "seti_forged", "terms_version": "2026-11"}, follow=True
    )
    assert "The card was not saved" in done.content.decode()
    assert not TermsAcceptance.objects.exists()


def test_a_partners_card_records_its_merchants_acceptance_under_the_key(
    account,  # noqa: F811
    partner_api,
    stripe_standin,
    terms,
):
    response = partner_api.put(
        "/api/v1/accounts/shop/payment-method",
        {"stripe_payment_method": stripe_standin.card(OK)},
        format="json",
        REMOTE_ADDR="198.51.100.20",
        HTTP_USER_AGENT="acme-billing/2.1",
    )
    assert response.status_code == 200, response.json()
    acceptance = TermsAcceptance.objects.get()
    assert (acceptance.source, acceptance.user, acceptance.version) == (
        "partner_api",
        None,
        "2026-11",
    )
    key = ApiKey.objects.get(name="tests")
    assert acceptance.accepted_by == f"API key {key.prefix} (tests)"
    assert acceptance.text.startswith("By saving this card you authorise Helpdesk Billing Inc.")
    assert (acceptance.ip_address, acceptance.user_agent) == ("198.51.100.20", "acme-billing/2.1")
    assert acceptance.card.startswith("Visa •••• 4242 (pm_")
    assert AuditEntry.objects.get(action="terms.accepted").source == "partner"
