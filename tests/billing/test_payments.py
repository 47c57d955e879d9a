"""Payments against localstripe on loopback: states, emails (once each), PaymentIntents."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.core import mail

from billing import payments
from billing.models import Invoice, PaymentAttempt
from billing.run import run_billing
from metering.selectors import entitlements
from plans.models import Subscription

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OK = "4242424242424242"
DECLINED = "4000000000000341"
THREE_DS = "4000002760003184"


@pytest.fixture
def bill(django_capture_on_commit_callbacks):
    """run_billing as of an instant, with what it queues on commit (charges, emails) run."""

    def run(as_of):
        with (
            django_capture_on_commit_callbacks(execute=True),
            time_machine.travel(as_of, tick=False),
        ):
            return run_billing(as_of=as_of)

    return run


@pytest.fixture
def shop(make_account, stripe_standin, partner_api):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")
    return account


def use_card(partner_api, stripe_standin, number):
    response = partner_api.put(
        "/api/v1/accounts/shop/payment-method",
        {"stripe_payment_method": stripe_standin.card(number)},
        format="json",
    )
    assert response.status_code == 200, response.json()
    return response.json()


def sent_on_commit():
    """Run on-commit callbacks (emails) at once inside the test's transaction."""
    return mock.patch("django.db.transaction.on_commit", side_effect=lambda f, *a, **k: f())


def not_charged_by_run_billing():
    """Issue invoices without the charge task, to drive the charge by hand."""
    return mock.patch("billing.payments.collectable_invoice_ids", return_value=[])


def collect(invoice):
    """What the collection task does for one invoice."""
    return payments.invoice_collect(invoice_id=invoice.pk)


def subjects():
    return [m.subject for m in mail.outbox]


def test_F1_the_first_invoice_is_charged_at_once_and_a_receipt_sent(
    shop, partner_api, stripe_standin, bill
):
    card = use_card(partner_api, stripe_standin, OK)
    assert card["last4"] == "4242" and card["default"] is True
    bill(T0)
    invoice = Invoice.objects.get(account=shop)
    assert invoice.status == "paid"
    assert subjects() == [f"Receipt for invoice {invoice.number}"]
    assert len(stripe_standin.intents()) == 1
    [attempt] = partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()["payment_attempts"]
    assert attempt["status"] == "succeeded" and attempt["amount"] == {
        "amount": 6000,
        "currency": "USD",
    }


def test_F3_decline_then_card_update_then_retry_payment_pays_and_reactivates(
    shop, partner_api, stripe_standin, bill
):
    use_card(partner_api, stripe_standin, DECLINED)
    bill(T0)
    invoice = Invoice.objects.get(account=shop)
    assert invoice.status == "past_due"
    assert Subscription.objects.get(account=shop).status == "past_due"
    detail = partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()
    reason = detail["payment_attempts"][0]["failure_reason"]
    assert "declined" in reason
    [failed] = mail.outbox
    assert (
        failed.subject == f"Payment failed for invoice {invoice.number}" and reason in failed.body
    )
    use_card(partner_api, stripe_standin, OK)
    with time_machine.travel(T0 + timedelta(hours=3), tick=False), sent_on_commit():
        retried = partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "paid"
    assert Subscription.objects.get(account=shop).status == "active"
    assert len(stripe_standin.intents()) == 2
    assert subjects() == [
        f"Payment failed for invoice {invoice.number}",
        f"Receipt for invoice {invoice.number}",
    ]
    again = partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry")
    assert again.status_code == 409  # a paid invoice is never charged again (F5)
    assert len(stripe_standin.intents()) == 2


def test_F2_three_d_secure_confirmed_on_the_secure_page_pays(
    shop, partner_api, stripe_standin, bill, client
):
    use_card(partner_api, stripe_standin, THREE_DS)
    bill(T0)
    invoice = Invoice.objects.get(account=shop)
    assert invoice.status == "requires_confirmation"
    [email] = mail.outbox
    assert email.subject == f"Please confirm your payment for invoice {invoice.number}"
    url = partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()["confirmation_url"]
    assert url.startswith("http://127.0.0.1:8000/pay/confirm/")
    path = next(w for w in email.body.split() if "/pay/confirm/" in w).removeprefix(
        "http://127.0.0.1:8000"
    )
    # The customer opens the link two hours after the email, on the same clock that signed it.
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        page = client.get(path)  # no login needed
        assert page.status_code == 200 and b"Confirm payment" in page.content
        attempt = PaymentAttempt.objects.get(invoice=invoice)
        stripe_standin.authenticate(attempt.stripe_payment_intent, success=True)
        with sent_on_commit():
            done = client.post(path)
        assert done.status_code == 302
        invoice.refresh_from_db()
        assert invoice.status == "paid"
        assert b"This invoice is paid" in client.get(path).content
    assert len(stripe_standin.intents()) == 1
    assert subjects()[-1] == f"Receipt for invoice {invoice.number}"


def test_F2_failed_authentication_is_past_due_with_the_reason(
    shop, partner_api, stripe_standin, bill, client
):
    use_card(partner_api, stripe_standin, THREE_DS)
    bill(T0)
    attempt = PaymentAttempt.objects.get()
    stripe_standin.authenticate(attempt.stripe_payment_intent, success=False)
    path = payments.confirmation_path(attempt)
    client.post(path)
    invoice = Invoice.objects.get()
    attempt.refresh_from_db()
    assert invoice.status == "past_due"
    assert (
        attempt.failure_reason == "The bank's authentication (3-D Secure) failed or was cancelled."
    )
    assert b"could not be confirmed" in client.get(path).content


def test_F2_reminders_on_days_1_3_7_until_confirmed(shop, partner_api, stripe_standin, bill):
    use_card(partner_api, stripe_standin, THREE_DS)
    bill(T0)
    for day in range(1, 12):
        bill(T0 + timedelta(days=day))
    reminders = [s for s in subjects() if s.startswith("Reminder")]
    assert len(reminders) == 3
    assert len(stripe_standin.intents()) == 1  # reminders never charge


def days_on_which(bill, count, days) -> list[int]:
    """The days after T0 whose billing run made `count()` grow."""
    grew_on = []
    for day in days:
        before = count()
        bill(T0 + timedelta(days=day))
        if count() > before:
            grew_on.append(day)
    return grew_on


def test_F2_the_reminders_go_out_on_days_1_3_and_7_after_the_request(
    shop, partner_api, stripe_standin, bill
):
    use_card(partner_api, stripe_standin, THREE_DS)
    bill(T0)
    reminders_sent = days_on_which(
        bill, lambda: sum(s.startswith("Reminder") for s in subjects()), range(1, 12)
    )
    assert reminders_sent == [1, 3, 7]


def test_F3_automatic_retries_on_days_1_2_4_6_8_11_14_after_the_first_failure(
    shop, partner_api, stripe_standin, bill
):
    use_card(partner_api, stripe_standin, DECLINED)
    bill(T0)
    charged = days_on_which(bill, lambda: len(stripe_standin.intents()), range(1, 16))
    assert charged == [1, 2, 4, 6, 8, 11, 14]


def test_F4_retries_exhausted_suspend_then_a_payment_reactivates(
    shop, partner_api, stripe_standin, bill
):
    use_card(partner_api, stripe_standin, DECLINED)
    bill(T0)
    for day in range(1, 16):
        bill(T0 + timedelta(days=day))
    invoice = Invoice.objects.get(account=shop)
    assert invoice.attempts.count() == 8  # 8 tries within 2 weeks
    assert Subscription.objects.get(account=shop).status == "suspended"
    assert (
        entitlements(account=shop, subscription=Subscription.objects.get(account=shop))["helpdesk"][
            "state"
        ]
        == "suspended"
    )
    assert (
        subjects().count(f"Your subscription is suspended: invoice {invoice.number} is unpaid") == 1
    )
    use_card(partner_api, stripe_standin, OK)
    with sent_on_commit():
        partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry")
    assert Subscription.objects.get(account=shop).status == "active"
    assert subjects()[-2:] == [
        f"Receipt for invoice {invoice.number}",
        "Your subscription is active again",
    ]
    assert len(stripe_standin.intents()) == 9


def test_F5_a_worker_killed_between_intent_and_result_charges_exactly_once(
    shop, partner_api, stripe_standin
):
    use_card(partner_api, stripe_standin, OK)
    with not_charged_by_run_billing():
        run_billing(as_of=T0)  # issues the invoice; the charge task is what we kill
    invoice = Invoice.objects.get()
    killed = mock.patch("billing.payments._apply", side_effect=SystemExit("worker killed"))
    with killed, pytest.raises(SystemExit):
        collect(invoice)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "sending" and len(stripe_standin.intents()) == 1
    assert collect(invoice) is None  # the task runs again at once: claimed, nothing is sent
    assert len(stripe_standin.intents()) == 1
    later = datetime.now(UTC) + timedelta(minutes=10)
    with time_machine.travel(later, tick=False):  # staleness is judged by the wall clock
        payments.attempts_reconcile(as_of=later)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert PaymentAttempt.objects.get().status == "succeeded"
    succeeded = [i for i in stripe_standin.intents() if i.status == "succeeded"]
    assert len(succeeded) == 1 and len(stripe_standin.intents()) == 1


def test_an_unknown_outcome_is_resolved_by_asking_stripe_not_by_charging_again(
    shop, partner_api, stripe_standin
):
    use_card(partner_api, stripe_standin, OK)
    with not_charged_by_run_billing():
        run_billing(as_of=T0)
    invoice = Invoice.objects.get()
    real = payments.gateway.charge_off_session

    def lost_answer(**kwargs):
        real(**kwargs)  # Stripe charged, but the answer never came back
        return payments.gateway.ChargeResult("unknown")

    with mock.patch.object(payments.gateway, "charge_off_session", side_effect=lost_answer):
        collect(invoice)
    assert PaymentAttempt.objects.get().status == "unknown"
    later = datetime.now(UTC) + timedelta(minutes=10)  # past the wait, by the wall clock
    with time_machine.travel(later, tick=False):
        payments.attempts_reconcile(as_of=later)
    invoice.refresh_from_db()
    assert invoice.status == "paid" and len(stripe_standin.intents()) == 1


def test_F2_the_payment_history_offers_confirm_payment_to_owners_only(
    shop, partner_api, stripe_standin, bill, client, django_user_model
):
    from accounts.models import Membership

    use_card(partner_api, stripe_standin, THREE_DS)
    bill(T0)
    owner = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    agent = django_user_model.objects.create_user("agent@shop.example", password="pw-agent-123")
    Membership.objects.create(user=owner, account=shop, role=Membership.Role.OWNER)
    Membership.objects.create(user=agent, account=shop, role=Membership.Role.AGENT)
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert "Confirm payment" in page and "/pay/confirm/" in page and "Visa •••• 3184" in page
    client.force_login(agent)
    page = client.get("/").content.decode()
    assert "Payment history" not in page and "Confirm payment" not in page
    invoice = Invoice.objects.get()
    assert client.post(f"/billing/invoices/{invoice.pk}/retry").status_code == 404


def test_F2_a_confirmation_link_expires_after_30_days(
    shop, partner_api, stripe_standin, bill, client
):
    use_card(partner_api, stripe_standin, THREE_DS)
    bill(T0)
    invoice = Invoice.objects.get(account=shop)
    with time_machine.travel(T0, tick=False):  # signed when the email went out
        path = payments.confirmation_path(PaymentAttempt.objects.get(invoice=invoice))
    with time_machine.travel(T0 + timedelta(days=29), tick=False):
        assert client.get(path).status_code == 200
    with time_machine.travel(T0 + timedelta(days=31), tick=False):
        page = client.get(path)
    assert page.status_code == 410 and b"expired" in page.content
