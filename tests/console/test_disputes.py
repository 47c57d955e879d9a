"""The console's card disputes (issue 26, item 2): the Disputes page (open first, with the
evidence deadline), the account page's list, the evidence pack, and an operator's decision on a
lost dispute: another card, suspend, write off, each audited.

Disputes reach the portal as Stripe's webhooks, read back through the gateway; localstripe has
no disputes, so `gateway.dispute_get` reads recorded-shape objects (tests.billing.test_disputes).
"""

import csv
import io
import zipfile
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.core import mail

from accounts.models import ApiKey, Membership, TermsAcceptance
from accounts.services import login_record
from audit.models import AuditEntry
from billing import payments, run, statement
from billing.models import Dispute, Invoice, PaymentAttempt
from plans.models import Subscription
from tests.billing.test_disputes import (  # noqa: F401  (fixture)
    DUE_BY,
    STRIPE,
    dispute_event,
    stripe_dispute,
    stripe_disputes,
)
from tests.billing.test_payments import OK, T0, use_card
from tests.billing.test_statement import emails_sent
from tests.billing.test_webhooks import deliver
from tests.metering.helpers import ingest

pytestmark = pytest.mark.django_db

CLOSE = T0 + timedelta(days=30)
MADE = CLOSE + timedelta(days=10)  # when the operator downloads an evidence pack


def tickets(n: int) -> list[dict]:
    """`n` email tickets a customer opened and an agent answered in November."""
    events = []
    for i in range(n):
        at = T0 + timedelta(days=2, minutes=i)
        events += [
            {
                "id": f"t{i}-c",
                "type": "message",
                "ticket": f"T-{i}",
                "occurred_at": at,
                "channel": "email",
                "author": "customer",
            },
            {
                "id": f"t{i}-a",
                "type": "message",
                "ticket": f"T-{i}",
                "occurred_at": at + timedelta(seconds=30),
                "channel": "email",
                "author": "agent",
            },
        ]
    return events


@pytest.fixture
def charged(shop, partner_api, stripe_standin, bill):
    """The shop's November close, charged to Visa •••• 4242: the invoice a bank disputes."""
    use_card(partner_api, stripe_standin, OK)
    bill(T0)
    ingest(shop, tickets(3), now=T0 + timedelta(days=3))
    with time_machine.travel(CLOSE + timedelta(days=1), tick=False):
        bill(CLOSE + timedelta(days=1))
    invoice = Invoice.objects.get(account=shop, reason="period_close")
    assert invoice.status == "paid"
    return invoice


def dispute(client, invoice, status="needs_response", event="evt_1", **kw) -> Dispute:
    STRIPE["dp_1"] = stripe_dispute(invoice.attempts.get(status="succeeded"), status=status, **kw)
    kind = "closed" if status in ("won", "lost") else "created"
    with emails_sent():
        assert deliver(client, dispute_event(event, kind, STRIPE["dp_1"])).status_code == 200
    return Dispute.objects.get(stripe_dispute_id="dp_1")


@pytest.fixture
def lost(ops, charged):
    dispute(ops, charged)
    row = dispute(ops, charged, status="lost", event="evt_2")
    charged.refresh_from_db()
    assert charged.status == "disputed_lost"
    return row


def test_the_disputes_page_lists_open_disputes_first_with_the_deadline(ops, charged, shop):
    # An older dispute, won, recorded before (a row as billing.disputes writes it).
    won = dispute(ops, charged, dispute_id="dp_1")
    Dispute.objects.filter(pk=won.pk).update(stripe_dispute_id="dp_old", status="won")
    STRIPE.clear()
    dispute(ops, charged, event="evt_new")
    page = ops.get("/console/disputes/").content.decode()
    assert page.index('data-dispute-status="needs_response"') < page.index(
        'data-dispute-status="won"'
    )
    assert 'aria-current="page">Disputes</a>' in page
    assert 'data-dispute-status="needs_response"' in page
    assert f"{DUE_BY:%b} {DUE_BY.day}, {DUE_BY:%Y} 23:59 UTC" in page
    assert "$" in page and "fraudulent" in page and "Evidence pack (zip)" in page
    # The attention queue lists the invoice too, with the deadline, until it is settled.
    queue = ops.get("/console/?attention=dispute").content.decode()
    assert charged.number in queue
    assert "Card dispute of $" in queue and "open: evidence due by Nov 20, 2026" in queue
    account_page = ops.get(f"/console/accounts/{shop.pk}/").content.decode()
    assert 'id="disputes"' in account_page and "needs a response" in account_page


def evidence_text(ops, row: Dispute) -> str:
    with time_machine.travel(MADE, tick=False):
        response = ops.get(f"/console/disputes/{row.pk}/evidence/")
    return zipfile.ZipFile(io.BytesIO(response.content)).read("account.txt").decode()


def test_the_evidence_pack_holds_the_invoice_the_billed_tickets_and_the_logins(
    ops, charged, shop, django_user_model
):
    owner = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=owner, account=shop, role=Membership.Role.OWNER)
    row = dispute(ops, charged)
    response = ops.get(f"/console/disputes/{row.pk}/evidence/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert 'filename="dispute-dp_1-evidence.zip"' in response["Content-Disposition"]
    pack = zipfile.ZipFile(io.BytesIO(response.content))
    number = charged.number
    names = ["account.txt", f"invoice-{number}.pdf", f"usage-{number}.csv"]
    assert sorted(pack.namelist()) == names
    assert pack.read(f"invoice-{number}.pdf").startswith(b"%PDF")
    rows = list(csv.DictReader(io.StringIO(pack.read(f"usage-{number}.csv").decode())))
    tickets_billed = sorted({r["ticket_or_session"] for r in rows if r["kind"] == "ticket"})
    assert tickets_billed == ["T-0", "T-1", "T-2"]
    assert all(r["rules"] for r in rows)  # each unit names the rules that counted it
    text = pack.read("account.txt").decode()
    assert "owner@shop.example (owner)" in text
    assert "dp_1" in text and number in text


def test_the_evidence_pack_shows_the_terms_accepted_with_the_card(ops, charged, partner):
    # The charged card was put by the partner's key (the `charged` fixture): its acceptance.
    acceptance = TermsAcceptance.objects.get(account=charged.account)
    key = ApiKey.objects.get(partner=partner, name="tests")
    text = evidence_text(ops, dispute(ops, charged))
    assert (
        f"- {acceptance.accepted_at.isoformat()}: version {settings.TERMS_VERSION}, by API key "
        f"{key.prefix} (tests) through the partner API (the partner asserts its merchant "
        f"accepted), from 127.0.0.1 (no user agent), with the card {acceptance.card}"
    ) in text
    assert (
        f"  Text shown: By saving this card you authorise {settings.TAX_SELLER_LEGAL_NAME} to "
        "charge it for this account's invoices under the Terms of Service (version "
        f"{settings.TERMS_VERSION}, {settings.TERMS_URL})."
    ) in text
    assert "No acceptance recorded" not in text


def test_a_card_saved_before_acceptances_were_kept_is_said_so(ops, charged):
    TermsAcceptance.objects.all().delete()  # as for a card saved before this release
    text = evidence_text(ops, dispute(ops, charged))
    assert (
        "Terms of Service: No acceptance recorded (the card was saved before acceptances were "
        "kept)."
    ) in text


def test_the_evidence_pack_lists_the_members_logins_from_90_days_before_the_charge(
    ops, charged, shop, make_account, django_user_model
):
    owner = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=owner, account=shop, role=Membership.Role.OWNER)
    stranger = django_user_model.objects.create_user("someone@elsewhere.example")
    with time_machine.travel(T0, tick=False):
        elsewhere = make_account(slug="elsewhere", plan="basic")
    Membership.objects.create(user=stranger, account=elsewhere, role=Membership.Role.OWNER)
    charged_at = charged.attempts.get(status="succeeded").completed_at
    browser = "Mozilla/5.0 (Macintosh) Safari/605.1.15"
    for user, at, address in [
        (owner, charged_at - timedelta(days=91), "192.0.2.91"),  # before the window
        (owner, charged_at - timedelta(days=89), "192.0.2.89"),
        (owner, charged_at + timedelta(days=2), "192.0.2.2"),
        (stranger, charged_at - timedelta(days=1), "198.51.100.1"),  # not a member of the shop
    ]:
        login_record(user=user, at=at, ip_address=address, user_agent=browser)
    text = evidence_text(ops, dispute(ops, charged))
    since = charged_at - timedelta(days=90)
    section = text.split(f"Members' successful logins from {since.isoformat()} (90 days before")[1]
    assert f"charge of {charged_at.isoformat()}) to {MADE.isoformat()}, oldest first:" in section
    listed = [line for line in section.splitlines() if line.startswith("- 20")]
    assert listed == [
        f"- {(charged_at - timedelta(days=89)).isoformat()} owner@shop.example from 192.0.2.89 "
        f"({browser})",
        f"- {(charged_at + timedelta(days=2)).isoformat()} owner@shop.example from 192.0.2.2 "
        f"({browser})",
    ]
    assert "someone@elsewhere.example" not in text


def test_another_card_emails_the_merchant_and_nothing_charges_it(act, lost, charged, ops):
    response = act(f"/console/disputes/{lost.pk}/another-card/", reason="bank reversed it")
    assert response.status_code == 302
    charged.refresh_from_db()
    assert charged.status == "past_due"
    lost.refresh_from_db()
    assert lost.decision == "another_card" and lost.decided_at is not None
    [email] = [m for m in mail.outbox if "your bank reversed its payment" in m.subject]
    assert "$" in email.body and "Add another card" in email.body
    assert statement.invoice_figures(charged).amount_due_minor == charged.total_minor
    # Neither the sweep, the billing run nor the retry schedule charges it.
    assert charged.pk not in payments.collectable_invoice_ids()
    later = CLOSE + timedelta(days=20)
    with time_machine.travel(later, tick=False), emails_sent():
        run.run_billing(as_of=later)
        run.collect_due(as_of=later)
    assert PaymentAttempt.objects.filter(invoice=charged).count() == 1
    [row] = AuditEntry.objects.filter(action="operator.dispute_decided")
    assert row.actor == "olivia" and row.reason == "bank reversed it"
    assert row.after == {"decision": "another_card", "invoice": "past_due"}
    page = ops.get("/console/disputes/").content.decode()
    assert "ask for another card" in page
    # Decided: out of the queue's disputes (its past-due status keeps it in the queue).
    assert charged.number not in ops.get("/console/?attention=dispute").content.decode()


def test_a_lost_invoice_may_be_marked_paid_or_written_off_from_its_page(ops, lost, charged):
    page = ops.get(f"/console/invoices/{charged.pk}/").content.decode()
    assert "Mark paid out of band" in page and "Mark uncollectible" in page
    assert "Retry now" not in page  # never charged again but by the merchant's choice


def test_suspend_suspends_the_subscription_and_the_invoice_stays_owed(act, lost, charged, shop):
    act(f"/console/disputes/{lost.pk}/suspend/", reason="fraud suspected")
    subscription = Subscription.objects.get(account=shop)
    assert subscription.status == "suspended"
    charged.refresh_from_db()
    assert charged.status == "disputed_lost"
    assert statement.account_statement(account=shop).amount_owed_minor == charged.total_minor
    assert AuditEntry.objects.filter(action="operator.dispute_decided").count() == 1
    assert AuditEntry.objects.filter(action="subscription.status", after="suspended").exists()


def test_write_off_makes_the_invoice_uncollectible_once(act, lost, charged, shop):
    act(f"/console/disputes/{lost.pk}/write-off/", reason="not worth chasing")
    charged.refresh_from_db()
    assert charged.status == "uncollectible"
    assert statement.account_statement(account=shop).amount_owed_minor == 0
    # Decided: a second decision is refused in words, and changes nothing.
    act(f"/console/disputes/{lost.pk}/another-card/", reason="changed my mind")
    charged.refresh_from_db()
    assert charged.status == "uncollectible"
    assert AuditEntry.objects.filter(action="operator.dispute_decided").count() == 1


def test_an_open_dispute_has_no_decision_to_take(act, ops, charged):
    row = dispute(ops, charged)
    act(f"/console/disputes/{row.pk}/write-off/", reason="too early")
    charged.refresh_from_db()
    assert charged.status == "paid"
    row.refresh_from_db()
    assert row.decision == ""


def test_after_another_card_the_merchants_new_card_pays_it_once(
    act, lost, charged, partner_api, stripe_standin
):
    act(f"/console/disputes/{lost.pk}/another-card/", reason="bank reversed it")
    use_card(partner_api, stripe_standin, OK)  # the merchant's new card
    with emails_sent():
        payments.invoice_charge(invoice_id=charged.pk, trigger="retry")
        payments.invoice_charge(invoice_id=charged.pk, trigger="retry")  # a second click
    charged.refresh_from_db()
    assert charged.status == "paid"
    attempts = PaymentAttempt.objects.filter(invoice=charged, status="succeeded")
    assert sorted(a.amount_minor for a in attempts) == [charged.total_minor] * 2  # old + new
    assert statement.invoice_figures(charged).amount_due_minor == 0
