"""Change plan and add-ons from the page: downgrades warned then scheduled with a banner and a
Cancel (P7), upgrades shown prorated then paid at once (P6). Billing details, validated."""

import re
from unittest import mock

import pytest
from django.conf import settings

from accounts.models import Account
from billing import gateway, payments
from billing.invoicing import invoice_transition
from billing.models import Invoice
from plans.models import ScheduledChange, Subscription, SubscriptionAddOn
from tests.billing.pages_fixtures import HALF, account, at  # noqa: F401
from tests.billing.test_payments import OK


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def page_of(response) -> str:
    return response.content.decode()


def test_a_downgrade_warns_then_is_scheduled_with_a_banner_and_can_be_cancelled(logged_in):
    with at():
        plan_page = page_of(logged_in.get("/billing/shop/plan/"))
        assert "Downgrade to Starter" in plan_page and "Upgrade to Pro" in plan_page
        confirm = page_of(logged_in.get("/billing/shop/change/?plan=starter"))
        # One boundary, named two ways: the last day on the old terms, the first on the new.
        assert (
            "This is a downgrade: it takes effect at the end of your billing cycle, from Dec 1, "
            "2026.</strong> You keep what you have now until Nov 30, 2026"
        ) in confirm
        assert "Schedule the downgrade" in confirm
        done = logged_in.post(
            "/billing/shop/change/", {"plan": "starter", "form_token": "d1"}, follow=True
        )
    page = page_of(done)
    assert "Scheduled: the Starter plan from Dec 1, 2026. You can cancel it until Nov 30" in page
    assert "Basic → Starter plan from Dec 1, 2026, the first day of your next billing" in page
    change = ScheduledChange.objects.get()
    assert change.status == "scheduled"
    assert Subscription.objects.get(account__slug="shop").plan.code == "basic"
    # The banner is on every billing page, with its Cancel button.
    with at():
        usage = page_of(logged_in.get("/billing/shop/usage/"))
    assert "Basic → Starter plan" in usage and "Cancel this change" in usage
    cancelled = logged_in.post(
        f"/billing/shop/changes/{change.pk}/cancel", {"form_token": "c1"}, follow=True
    )
    assert "The scheduled change is cancelled" in page_of(cancelled)
    assert "Basic → Starter plan" not in page_of(cancelled)
    assert ScheduledChange.objects.get().status == "canceled"


ENDS = "Your subscription ends: everything works until <strong>Nov 30, 2026</strong>"


def test_cancel_at_the_cycle_end_is_confirmed_then_shows_the_end_on_every_page_until_undone(
    logged_in,
):
    with at():
        plan_page = page_of(logged_in.get("/billing/shop/plan/"))
        # The plan tab leads to the confirmation step; nothing is cancelled in one click.
        assert "Cancel subscription…" in plan_page and "/billing/shop/cancel/" in plan_page
        confirm = page_of(logged_in.get("/billing/shop/cancel/"))
    assert "everything works until Nov 30, 2026, then nothing renews." in confirm
    assert "From Dec 1, 2026 the helpdesk, automation and campaigns are switched off." in confirm
    assert "No further fees are charged" in confirm
    assert "Nov 1 – Nov 30, 2026: invoiced as usual when it closes." in confirm
    assert "Issued on Dec 1, 2026 with that usage" in confirm
    assert "Cancel my subscription" in confirm and ScheduledChange.objects.count() == 0
    with at():
        form = {"form_token": "x1", "reason": "switching"}
        done = logged_in.post("/billing/shop/cancel/", form, follow=True)
        assert "Cancelled: your subscription runs until Nov 30, 2026" in page_of(done)
        twice = logged_in.post("/billing/shop/cancel/", form, follow=True)  # a double click
        assert "That form was already sent" in page_of(twice)
        change = ScheduledChange.objects.get(cancel=True)
        assert change.cancel_reason == "switching"
        for page in ("", "usage/", "invoices/", "plan/", "details/"):
            text = page_of(logged_in.get(f"/billing/shop/{page}"))
            assert ENDS in text, page
            assert "Undo: keep my subscription" in text and "Renews" not in text
        # A second, separate request finds the scheduled end instead of adding one.
        again = logged_in.post(
            "/billing/shop/cancel-subscription", {"form_token": "x2"}, follow=True
        )
        assert "Your subscription already ends: it runs until Nov 30, 2026." in page_of(again)
        assert ScheduledChange.objects.filter(cancel=True).count() == 1
        undone = logged_in.post(
            f"/billing/shop/changes/{change.pk}/cancel",
            {"form_token": "u1", "next": "/billing/shop/plan/"},
            follow=True,
        )
    text = page_of(undone)
    assert "Your subscription continues: it renews from Dec 1, 2026 as before." in text
    assert "Your subscription ends" not in text and "Cancel subscription…" in text
    assert ScheduledChange.objects.get(pk=change.pk).status == "canceled"


def test_a_double_click_schedules_one_downgrade(logged_in):
    with at():
        for _ in range(2):
            logged_in.post("/billing/shop/change/", {"plan": "starter", "form_token": "same"})
    assert ScheduledChange.objects.count() == 1


def test_an_upgrade_shows_the_prorated_amount_and_is_paid_at_once(
    logged_in,
    account,  # noqa: F811
    stripe_standin,
):
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
    with at():
        confirm = page_of(logged_in.get("/billing/shop/change/?plan=pro"))
        # (360 $ − 60 $) × 15 of 30 days
        assert "Upgrade and pay $150.00" in confirm and "Visa •••• 4242" in confirm
        with mock.patch.object(payments, "invoice_charge", wraps=payments.invoice_charge) as pay:
            done = logged_in.post(
                "/billing/shop/change/", {"plan": "pro", "form_token": "u1"}, follow=True
            )
    invoice = Invoice.objects.get(account=account, reason="upgrade")
    pay.assert_called_once_with(invoice_id=invoice.pk, trigger="upgrade", at=None)
    assert invoice.status == "paid" and invoice.total_minor == 15000
    assert f"Invoice {invoice.number} ($150.00) is paid." in page_of(done)
    assert Subscription.objects.get(account=account).plan.code == "pro"


def test_an_upgrade_needs_a_card_first(logged_in, account):  # noqa: F811
    with at():
        confirm = page_of(logged_in.get("/billing/shop/change/?plan=pro"))
        assert "Add a card first" in confirm and "Upgrade and pay" not in confirm
        response = logged_in.post("/billing/shop/change/", {"plan": "pro"})
    assert response.status_code == 302 and response["Location"].endswith("/payment-method")
    assert Subscription.objects.get(account=account).plan.code == "basic"


def test_monthly_to_yearly_shows_the_saving_and_the_credit(logged_in):
    with at():
        plan_page = page_of(logged_in.get("/billing/shop/plan/"))
        confirm = page_of(logged_in.get("/billing/shop/change/?interval=year"))
    assert "you save $120.00" in plan_page
    # The annual cycle keeps the month's start (Nov 1), so the annual fee is prorated from the
    # change (Nov 16) to Nov 1 next year: 72,000 × 350 / 365 days = 57,534 (docs/pricing.md).
    assert "unused part of the monthly fee" in confirm and "-$30.00" in confirm
    text = " ".join(re.sub(r"<[^>]+>", " ", confirm).split())
    assert "$575.34" in text and "Charged now $545.34" in text


def test_add_an_add_on_then_schedule_its_removal(logged_in, account, stripe_standin):  # noqa: F811
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
    with at():
        addons = page_of(logged_in.get("/billing/shop/add-ons/"))
        assert "Add SMS" in addons and "SMS 20" in addons
        confirm = page_of(logged_in.get("/billing/shop/change/?addon=sms&tier=sms-20"))
        assert "Upgrade and pay $10.00" in confirm  # 20 $ × 15 of 30 days
        logged_in.post(
            "/billing/shop/change/", {"addon": "sms", "tier": "sms-20", "form_token": "a1"}
        )
        assert SubscriptionAddOn.objects.get(subscription__account=account).tier.code == "sms-20"
        removal = page_of(logged_in.get("/billing/shop/change/?addon=sms&tier="))
        assert "This is a downgrade" in removal
        done = logged_in.post(
            "/billing/shop/change/", {"addon": "sms", "tier": "", "form_token": "a2"}, follow=True
        )
    assert "SMS add-on: SMS 20 → removed from Dec 1, 2026" in page_of(done)


def test_bad_change_requests_say_what_is_wrong_never_500(logged_in):
    with at():
        unknown = logged_in.get("/billing/shop/change/?plan=gold", follow=True)
        same = logged_in.get("/billing/shop/change/?plan=basic", follow=True)
        empty = logged_in.post("/billing/shop/change/", {}, follow=True)
    assert "Unknown plan &#x27;gold&#x27;." in page_of(unknown)
    assert "nothing to change" in page_of(same)
    assert "Choose a plan, an interval or an add-on tier" in page_of(empty)


def test_billing_details_show_what_to_fix_then_save(logged_in, account):  # noqa: F811
    form = {
        "billing_email": "not-an-email",
        "company": "Shop SAS",
        "country": "ZZ",
        "vat_id": "DE123456789",
        "form_token": "b1",
    }
    bad = logged_in.post("/billing/shop/details/save", form)
    assert bad.status_code == 400
    page = page_of(bad)
    assert "Please fix what is marked below." in page
    assert "Enter a valid email address." in page
    assert "“ZZ” is a user-assigned code, not a country" in page
    assert 'value="Shop SAS"' in page  # what was typed is kept
    form.update(billing_email="billing@shop.example", country="fr", vat_id="DE123456789")
    prefix = logged_in.post("/billing/shop/details/save", form)
    assert "A VAT id from FR starts with FR." in page_of(prefix)
    form.update(vat_id="FR 40 303 265 045")
    done = logged_in.post("/billing/shop/details/save", form, follow=True)
    assert "Billing details saved" in page_of(done)
    account = Account.objects.get(slug="shop")  # noqa: F811
    assert (account.country, account.vat_id, account.company) == ("FR", "FR40303265045", "Shop SAS")


def test_a_saved_card_pays_the_issued_invoice_at_once(
    logged_in,
    account,  # noqa: F811
    stripe_standin,
    django_capture_on_commit_callbacks,
):
    method = stripe_standin.card(OK)
    with (
        mock.patch.object(gateway, "setup_intent_payment_method", return_value=method),
        django_capture_on_commit_callbacks(execute=True),
    ):
        done = logged_in.post(
            "/billing/shop/payment-method/save",
            {"setup_intent": "seti_x", "terms_version": settings.TERMS_VERSION},
            follow=True,
        )
    assert "Saved: Visa •••• 4242. It is used for the next payments." in page_of(done)
    invoice = Invoice.objects.get(account=account)
    assert invoice.status == "paid" and invoice.attempts.get().amount_minor == 6000


def test_a_saved_card_offers_to_pay_what_already_failed(logged_in, account, stripe_standin):  # noqa: F811
    invoice = Invoice.objects.get(account=account)
    invoice_transition(invoice=invoice, to="past_due", reason="declined")
    method = stripe_standin.card(OK)
    with mock.patch.object(gateway, "setup_intent_payment_method", return_value=method):
        done = logged_in.post(
            "/billing/shop/payment-method/save",
            {"setup_intent": "seti_x", "terms_version": settings.TERMS_VERSION},
            follow=True,
        )
    page = page_of(done)
    assert "1 unpaid invoice ($60.00) can be paid with it now" in page
    assert "Pay all outstanding" in page


def test_a_card_form_that_did_not_finish_is_a_message_not_a_500(
    logged_in,
    stripe_standin,
):
    done = logged_in.post(
        "/billing/shop/payment-method/save",
        {"setup_intent": "seti_forged", "terms_version": settings.TERMS_VERSION},
        follow=True,
    )
    assert done.status_code == 200 and "The card was not saved" in page_of(done)


def test_the_owner_gets_the_stripe_card_form(logged_in, stripe_standin):
    page = page_of(logged_in.get("/billing/shop/payment-method"))
    assert "Save card" in page and "js.stripe.com/v3/" in page and "seti_" in page


def test_agents_see_the_plan_page_without_change_buttons(client, teammate):
    client.force_login(teammate)
    with at(HALF):
        page = page_of(client.get("/billing/shop/plan/"))
    assert "Pro" in page and "Upgrade to Pro" not in page


def test_automated_resolutions_allocation_and_the_owners_limits(
    client, make_account, django_user_model
):
    from accounts.models import Membership
    from tests.billing.pages_fixtures import T0

    with at(T0):
        team = make_account(slug="team", plan="professional", full_agents=4)
    user = django_user_model.objects.create_user("owner@team.example", password="pw")
    Membership.objects.create(user=user, account=team, role=Membership.Role.OWNER)
    client.force_login(user)
    with at():
        page = page_of(client.get("/billing/team/usage/"))
        # Professional: 10 per full agent per month × 4 agents, for a monthly term (Z8).
        assert "<strong>0</strong> / 40 this term" in page
        assert "$2.00 each, billed monthly</dd>" in page
        bad = client.post(
            "/billing/team/usage/ai-limits", {"at_limit": "pause", "monthly_limit": 0}
        )
        assert bad.status_code == 400
        assert "Ensure this value is greater than or equal to 1." in page_of(bad)
        done = client.post(
            "/billing/team/usage/ai-limits",
            {"at_limit": "pause", "monthly_limit": "25", "form_token": "z1"},
            follow=True,
        )
    assert "Saved: the automated-resolution limits apply from now on." in page_of(done)
    assert "AI features pause; nothing is billed" in page_of(done)
    subscription = Subscription.objects.get(account=team)
    assert (subscription.ai_at_limit, subscription.ai_monthly_limit) == ("pause", 25)
