"""What the console says once an action is done: what happened, in words (issue 23, item 6).
"Retry now" says paid (how much, on which card), declined (the merchant's words for why, and
what follows) or waiting for the customer's bank; every attempt shows its Stripe id, or why
there is none; the first attempt of an invoice is its first charge, never a retry."""

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
import time_machine
from django.core import mail

from billing import actions, changes, gateway, payments
from billing.models import Dunning, Invoice, PaymentAttempt, PaymentMethod
from console.outcomes import retry_outcome
from tests.billing.test_payments import OK, THREE_DS, use_card
from tests.console.conftest import T0

pytestmark = pytest.mark.django_db

# An hour after the past-due invoice's first decline (T0): the retry schedule is ahead.
SOON = T0 + timedelta(hours=1)


def url(invoice, action=""):
    return f"/console/invoices/{invoice.pk}/" + (f"{action}/" if action else "")


def flash(ops, response) -> tuple[str, str]:
    """The message shown on the page the action returns to: (its level, its words)."""
    assert response.status_code == 302
    page = ops.get(response.url).content.decode()
    found = re.findall(r'<p class="flash (\w+)">(.*?)</p>', page, re.S)
    assert len(found) == 1, found
    level, text = found[0]
    return level, unescape(text)


def retry(act, invoice):
    with time_machine.travel(SOON, tick=False):
        return act(url(invoice, "retry"), reason="customer called")


# --- Retry now -------------------------------------------------------------------------------


def test_a_retry_that_is_paid_says_how_much_on_which_card(
    past_due, partner_api, stripe_standin, act, ops
):
    use_card(partner_api, stripe_standin, OK)
    assert flash(ops, retry(act, past_due)) == (
        "success",
        "Paid: $60.00 charged to Visa •••• 4242. The customer was emailed the receipt.",
    )


def test_a_declined_retry_says_why_in_the_merchants_words_and_what_follows(past_due, act, ops):
    level, text = flash(ops, retry(act, past_due))
    assert level == "error"
    # Two failures since T0: the next retry is on day 2 of the schedule.
    assert text == (
        "Declined: the bank declined the payment. Contact your bank or use another card. "
        "Next automatic retry: Nov 3, 2026 00:00 UTC. The customer was emailed the reason."
    )
    assert "Retry now: done" not in text


def test_a_retry_the_bank_wants_confirmed_says_the_customer_was_sent_the_link(
    past_due, partner_api, stripe_standin, act, ops
):
    use_card(partner_api, stripe_standin, THREE_DS)
    mail.outbox.clear()
    assert flash(ops, retry(act, past_due)) == (
        "warning",
        "Waiting for the customer to confirm with their bank (3-D Secure): we emailed them the "
        "link. The $60.00 is charged once they confirm.",
    )
    assert [m.subject for m in mail.outbox] == [
        f"Please confirm your payment for invoice {past_due.number}"
    ]


def test_a_charge_stripe_refuses_says_it_was_not_sent_and_shows_no_intent(past_due, act, ops):
    # A card Stripe does not know (deleted there, another Stripe account's): Stripe refuses
    # the request itself and creates no intent.
    PaymentMethod.objects.filter(account=past_due.account).update(stripe_id="pm_unknown_at_stripe")
    level, text = flash(ops, retry(act, past_due))
    assert level == "error" and text.startswith("Not sent: Stripe refused the request itself")
    attempt = past_due.attempts.get(number=2)
    assert (attempt.failure_code, attempt.stripe_payment_intent) == ("stripe_refused", "")
    row = re.search(r'<tr id="attempt-2">.*?</tr>', ops.get(url(past_due)).content.decode(), re.S)
    assert row is not None and "not sent" in row.group(0)


# Plain words for the codes the stand-in cannot produce (it declines every card one way).
def _declined(code: str) -> PaymentAttempt:
    return PaymentAttempt(
        number=2,
        status=PaymentAttempt.Status.FAILED,
        amount_minor=18_000,
        currency="USD",
        failure_code=code,
        failure_reason=gateway.reason_for(code),
        is_hard_decline=code in gateway.HARD_DECLINES,
    )


NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_insufficient_funds_reads_as_the_merchant_reads_it():
    outcome = retry_outcome(
        invoice=Invoice(number="2026-000042", status="past_due"),
        attempt=_declined("insufficient_funds"),
        card="Visa •••• 4242",
        dunning=Dunning(next_retry_at=NOW + timedelta(days=1)),
        now=NOW,
    )
    assert outcome.text == (
        "Declined: the card has insufficient funds. Next automatic retry: Nov 3, 2026 09:30 UTC. "
        "The customer was emailed the reason."
    )


def test_a_hard_decline_says_no_retry_follows():
    outcome = retry_outcome(
        invoice=Invoice(number="2026-000042", status="past_due"),
        attempt=_declined("stolen_card"),
        card="Visa •••• 4242",
        dunning=Dunning(next_retry_at=None),
        now=NOW,
    )
    assert outcome.text.startswith("Declined: the bank declined the card (reported stolen).")
    assert "A hard decline: no automatic retry" in outcome.text


def test_a_retry_credit_notes_already_cover_says_nothing_was_charged():
    outcome = retry_outcome(
        invoice=Invoice(number="2026-000042", status="paid"),
        attempt=None,
        card="",
        dunning=None,
        now=NOW,
    )
    assert outcome.text == (
        "Nothing charged: credit notes cover invoice 2026-000042, so it is settled."
    )


# --- the other actions -----------------------------------------------------------------------


def test_the_other_actions_say_what_they_did(past_due, act, ops):
    number = past_due.number
    with time_machine.travel(SOON, tick=False):
        pause = act(url(past_due, "pause"), reason="promised a transfer", until="2026-11-20")
        assert flash(ops, pause) == (
            "success",
            "Dunning paused until Nov 20, 2026 00:00 UTC: no retries, reminders or suspension "
            "before then.",
        )
        credit = act(
            url(past_due, "credit"), reason="goodwill", amount="20.00", description="Goodwill"
        )
        level, text = flash(ops, credit)
        assert level == "success" and re.fullmatch(
            rf"Credit note \S+ issued for \$20\.00: \$40\.00 is left to pay on {number}\.", text
        )
        paid = act(url(past_due, "mark-paid"), reason="wire", reference="BANK-2026-77")
        assert flash(ops, paid) == (
            "success",
            f"Marked paid out of band (reference BANK-2026-77): invoice {number} is settled and "
            "its retries and reminders stopped.",
        )


# --- the attempts' Stripe ids ------------------------------------------------------------------


def test_a_declined_attempt_keeps_the_intent_stripe_holds_for_it(past_due, ops):
    attempt = past_due.attempts.get()
    assert attempt.status == "failed" and attempt.stripe_payment_intent.startswith("pi_")
    # The intent at Stripe is this attempt's: found by its id, carrying the attempt's key.
    at_stripe = gateway.payment_intent_record(payment_intent=attempt.stripe_payment_intent)
    assert at_stripe is not None
    assert (at_stripe.attempt_key, at_stripe.outcome) == (attempt.idempotency_key, "failed")
    page = ops.get(url(past_due)).content.decode()
    assert f"<code>{attempt.stripe_payment_intent}</code>" in page


@pytest.mark.parametrize(
    ("key", "dashboard"),
    [
        ("sk_test_51abc", "https://dashboard.stripe.com/test/payments/"),
        ("sk_live_51abc", "https://dashboard.stripe.com/payments/"),
        ("rk_live_51abc", "https://dashboard.stripe.com/payments/"),
    ],
)
def test_the_intent_links_to_stripes_dashboard_in_the_keys_mode(
    past_due, ops, settings, key, dashboard
):
    intent = past_due.attempts.get().stripe_payment_intent
    settings.STRIPE_API_BASE, settings.STRIPE_API_KEY = "", key  # Stripe itself
    page = ops.get(url(past_due)).content.decode()
    assert f'href="{dashboard}{intent}"' in page


def test_the_stand_in_has_no_dashboard_to_link_to(past_due, ops):
    page = ops.get(url(past_due)).content.decode()
    assert "dashboard.stripe.com" not in page


# --- the first attempt -------------------------------------------------------------------------


def test_an_upgrades_first_attempt_is_its_first_charge_never_a_retry(
    make_account, stripe_standin, ops
):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
    with time_machine.travel(T0 + timedelta(days=15), tick=False):
        changed = actions.subscription_change(
            account=account,
            request=changes.ChangeRequest(plan="pro"),
            collect="now",
            card_required=True,
        )
    invoice = changed.result.invoice
    assert invoice is not None and invoice.reason == "upgrade"
    attempt = invoice.attempts.get()
    assert (attempt.number, attempt.trigger, attempt.status) == (1, "upgrade", "succeeded")
    row = re.search(r'<tr id="attempt-1">.*?</tr>', ops.get(url(invoice)).content.decode(), re.S)
    assert row is not None
    assert "first charge (upgrade)" in row.group(0) and "retry" not in row.group(0)


@pytest.mark.parametrize(
    ("trigger", "number", "words"),
    [
        ("automatic", 1, "first charge (automatic)"),
        ("upgrade", 1, "first charge (upgrade)"),
        ("restart", 1, "first charge (started again)"),
        # Upgrades paid before "upgrade" was recorded carry "retry": still a first charge.
        ("retry", 1, "first charge (by the merchant)"),
        ("operator", 1, "first charge (by an operator)"),
        ("automatic_retry", 2, "automatic retry"),
        ("retry", 2, "retry by the merchant"),
        ("operator", 3, "retry by an operator"),
        ("automatic", 4, "automatic charge"),
    ],
)
def test_each_trigger_has_its_words(trigger, number, words):
    assert PaymentAttempt(trigger=trigger, number=number).trigger_words == words
