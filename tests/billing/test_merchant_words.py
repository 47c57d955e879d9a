"""Every merchant page, email and PDF of a rich account, read as the merchant reads it: no rule
id ("(P2)", "rule P2"), no ISO date, no catalog code ("sms-20") in the visible text.

The rule ids stay where they are a detail on purpose: the "Why was this billed?" verdicts (the
small `.rule` tags, skipped here), the console and the API. Two accounts of one owner, over
three months of fixed dates: Basic with four add-ons (overage, the Convert limit reached, late
usage, an add-on upgrade, a scheduled removal, a credit note on a paid invoice and the account
credit it became, an invoice held over the spending cap) and a Professional AI edition (its
resolutions over the allocation, then paused by the owner's monthly limit).
"""

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from io import BytesIO

import pytest
import time_machine
from django.core import mail
from django.template.loader import render_to_string
from django.urls import URLPattern, get_resolver, reverse
from pypdf import PdfReader

from accounts.models import Membership
from billing import changes, invoicing, payments, statement
from billing.models import Invoice, InvoiceKind, PaymentAttempt, Refund, TicketDispute
from billing.run import run_billing
from billing.thresholds import usage_thresholds_notify
from console import services as console
from metering.limits import limits_reapply
from plans import periods
from plans.models import Subscription
from tests.billing.charges import counted
from tests.billing.test_run_billing import tickets
from tests.metering.helpers import ingest

pytestmark = pytest.mark.django_db

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)
SEEN_AT = JAN + timedelta(days=4, hours=9)  # when the merchant reads it all

RULE_ID = re.compile(r"\b[A-Z][0-9]{1,2}\b|\brules? [A-Z][0-9]")
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{4}-(?:0[1-9]|1[0-2])\b")
CATALOG_CODE = re.compile(r"\b(?:automate|voice|sms|convert)-\d+\b")
INTERNAL_REASON = "INTERNAL: ticket 4411, approved by Sam"


class _VisibleText(HTMLParser):
    """The text a reader sees (and hears: titles, labels, placeholders), without scripts, styles
    and the Why page's rule tags."""

    SKIPPED = {"script", "style"}
    SPOKEN = ("title", "aria-label", "placeholder", "alt")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if self.skipping or tag in self.SKIPPED or "rule" in (values.get("class") or "").split():
            if tag not in ("br", "input", "img", "meta", "link", "rect"):
                self.skipping.append(tag)
            return
        self.parts.extend(values[name] or "" for name in self.SPOKEN if name in values)
        self.parts.append("\n")

    def handle_endtag(self, tag):
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def visible(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join("".join(parser.parts).split())


def faults(text: str) -> list[str]:
    found = []
    for name, pattern in (("rule id", RULE_ID), ("ISO date", ISO_DATE), ("code", CATALOG_CODE)):
        for match in pattern.finditer(text):
            around = text[max(0, match.start() - 50) : match.end() + 30]
            found.append(f"{name} {match.group(0)!r} in …{around}…")
    if INTERNAL_REASON in text:
        found.append("the operator's reason for the credit note")
    return found


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(content)).pages)


@pytest.fixture
def rich(make_account, django_user_model, stripe_standin, django_capture_on_commit_callbacks):
    """The two accounts after three months, with every email their flows sent."""

    def flows(moment, step):
        with (
            time_machine.travel(moment, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            step()

    with time_machine.travel(NOV, tick=False):
        shop = make_account(
            slug="shop",
            plan="basic",
            addons=[
                ("automate", "automate-30"),
                ("voice", "voice-20"),
                ("sms", "sms-20"),
                ("convert", "convert-50"),
            ],
            company="Shop Ltd",
            address_line1="12 High Street",
            city="Dublin",
            country="IE",
        )
        team = make_account(slug="team", plan="professional", full_agents=4)
    owner = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    for account in (shop, team):
        Membership.objects.create(user=owner, account=account, role=Membership.Role.OWNER)
    shop_subscription = Subscription.objects.get(account=shop)
    team_subscription = Subscription.objects.get(account=team)

    flows(NOV, lambda: run_billing(as_of=NOV))
    first = Invoice.objects.get(account=shop)
    flows(
        NOV + timedelta(days=2),
        lambda: invoicing.invoice_settle(
            invoice=first, reason="paid by bank transfer", at=NOV + timedelta(days=2)
        ),
    )
    # A credit note on the paid first invoice: it becomes account credit, used on December's.
    flows(
        NOV + timedelta(days=9),
        lambda: console.invoice_credit(
            invoice=first,
            amount_minor=1000,
            description="Goodwill credit for the outage",
            reason=INTERNAL_REASON,
        ),
    )

    # November: over every allowance; Convert reaches its limit and pauses.
    for meter, n in [
        ("helpdesk_tickets", 420),
        ("voice_tickets", 25),
        ("sms_tickets", 30),
        ("automated_interactions", 40),
        ("convert_clicks", 60),
    ]:
        counted(shop, meter, n, NOV + timedelta(days=4))
    counted(team, "automated_resolutions", 45, NOV + timedelta(days=4))
    limits_reapply(subscription=shop_subscription, as_of=NOV + timedelta(days=5))
    flows(NOV + timedelta(days=20), lambda: usage_thresholds_notify(as_of=NOV + timedelta(days=20)))
    flows(DEC, lambda: run_billing(as_of=DEC))

    # December: late November tickets (billed on January's invoice), an upgrade of SMS, real
    # tickets for "Why was this billed?".
    counted(
        shop, "helpdesk_tickets", 150, NOV + timedelta(days=19), recorded_at=DEC + timedelta(days=2)
    )
    ingest(shop, tickets(5, DEC + timedelta(days=3)), now=DEC + timedelta(days=3, hours=1))
    counted(shop, "convert_clicks", 50, DEC + timedelta(days=5))
    counted(shop, "helpdesk_tickets", 350, DEC + timedelta(days=8))
    limits_reapply(subscription=shop_subscription, as_of=DEC + timedelta(days=6))
    flows(
        DEC + timedelta(days=14),
        lambda: changes.subscription_change(
            account=shop, request=changes.ChangeRequest(addons=(("sms", "sms-75"),))
        ),
    )
    flows(DEC + timedelta(days=20), lambda: usage_thresholds_notify(as_of=DEC + timedelta(days=20)))

    # January: the close is held over the spending cap; Voice's removal waits for February;
    # the owner's monthly limit pauses the AI agents.
    Subscription.objects.filter(pk=shop_subscription.pk).update(spending_cap_minor=5000)
    flows(JAN, lambda: run_billing(as_of=JAN))
    held = Invoice.objects.get(account=shop, period_start=DEC, reason="period_close")
    flows(JAN, lambda: payments.invoice_charge(invoice_id=held.pk, trigger="automatic"))
    flows(
        JAN + timedelta(days=2),
        lambda: changes.subscription_change(
            account=shop, request=changes.ChangeRequest(addons=(("voice", None),))
        ),
    )
    Subscription.objects.filter(pk=team_subscription.pk).update(ai_monthly_limit=10)
    counted(team, "automated_resolutions", 12, JAN + timedelta(days=1))
    limits_reapply(
        subscription=Subscription.objects.get(pk=team_subscription.pk),
        as_of=JAN + timedelta(days=2),
    )
    return {"owner": owner, "shop": shop, "team": team, "held": held}


def _page_paths(slug: str) -> list[str]:
    """Every page of the Billing & Usage tabs a GET can show (no id in the path)."""
    base = reverse("billing:overview", args=[slug])
    patterns = get_resolver().url_patterns
    include = next(p for p in patterns if getattr(p, "app_name", "") == "billing")
    return [
        base + str(p.pattern)
        for p in include.url_patterns
        if isinstance(p, URLPattern) and "<" not in str(p.pattern)
    ]


def test_the_fixture_is_as_rich_as_it_claims(rich):
    shop = rich["shop"]
    kinds = {line.kind for line in Invoice.objects.get(pk=rich["held"].pk).lines.all()}
    assert {"late_usage", "overage", "plan_fee", "addon_fee"} <= kinds
    assert rich["held"].dunning.held_reason.startswith("Over the approved spending cap")
    assert Invoice.objects.filter(account=shop, kind=InvoiceKind.CREDIT_NOTE).count() == 1
    assert Invoice.objects.filter(account=shop, reason="upgrade").count() == 1
    december = Invoice.objects.get(account=shop, period_start=NOV, reason="period_close")
    assert december.lines.filter(credit_use__isnull=False).exists()  # the account credit
    team_close = Invoice.objects.get(account=rich["team"], period_start=NOV, reason="period_close")
    assert team_close.lines.filter(kind="overage", meter="automated_resolutions").exists()
    subjects = {m.subject for m in mail.outbox}
    assert any("on hold" in s for s in subjects) and any("% of your" in s for s in subjects)


def test_no_merchant_page_shows_a_rule_id_an_iso_date_or_a_code(client, rich):
    read: dict[str, str] = {}
    with time_machine.travel(SEEN_AT, tick=False):
        client.force_login(rich["owner"])  # a session of that day, not of today's
        paths = ["/"]
        for slug in ("shop", "team"):
            paths += _page_paths(slug)
            paths += [
                f"/billing/{slug}/usage/?period=2026-11",
                f"/billing/{slug}/usage/why/?ticket=1204-0",
            ]
        paths += [
            "/billing/shop/change/?addon=sms&tier=sms-250",
            "/billing/shop/change/?addon=convert&tier=convert-200",
            "/billing/shop/change/?addon=automate&tier=",
            "/billing/shop/change/?interval=year",
            "/billing/shop/change/?plan=starter",
            "/billing/shop/change/?plan=pro",
        ]
        for path in paths:
            response = client.get(path)
            if response.status_code == 405:
                continue  # a form's target
            if response.status_code == 302:  # a page for another state (start: one is live)
                assert not response.url.startswith("/login/"), path
                continue
            assert response.status_code == 200, path
            read[path] = visible(response.content.decode())
    # The pages the rich account is about, with what they must say.
    assert "Held, not charged: Over the approved spending cap" in read["/billing/shop/invoices/"]
    assert "Goodwill credit for the outage" in read["/billing/shop/invoices/"]
    assert "Monthly limit of 10 automated resolutions reached." in read["/billing/team/usage/"]
    assert (
        "Confirm: the SMS add-on, 250 SMS tickets a month"
        in read["/billing/shop/change/?addon=sms&tier=sms-250"]
    )
    assert (
        "Confirm: removing the Automate add-on"
        in read["/billing/shop/change/?addon=automate&tier="]
    )
    assert "rest of the period" in read["/billing/shop/change/?addon=sms&tier=sms-250"]
    problems = {path: faults(text) for path, text in read.items()}
    assert {path: found for path, found in problems.items() if found} == {}
    assert len(read) >= 20


def test_no_invoice_or_credit_note_pdf_shows_a_rule_id_an_iso_date_or_the_internal_reason(
    client, rich
):
    texts = {}
    with time_machine.travel(SEEN_AT, tick=False):
        client.force_login(rich["owner"])
        for invoice in Invoice.objects.exclude(status="draft").select_related("account"):
            response = client.get(f"/billing/{invoice.account.slug}/invoices/{invoice.pk}/pdf")
            assert response.status_code == 200
            texts[invoice.number] = pdf_text(response.content)
    assert len(texts) >= 8
    problems = {number: faults(" ".join(text.split())) for number, text in texts.items()}
    assert {number: found for number, found in problems.items() if found} == {}


def _rich_context(rich) -> dict:
    """What the emails' callers pass them, with the richest rows of the fixture."""
    shop, held = rich["shop"], rich["held"]
    december = Invoice.objects.get(account=shop, period_start=NOV, reason="period_close")
    attempt = PaymentAttempt.objects.create(
        invoice=december,
        number=1,
        trigger="automatic",
        idempotency_key=f"words-{december.pk}",
        amount_minor=december.total_minor,
        currency="USD",
        status=PaymentAttempt.Status.FAILED,
        failure_reason="Your card was declined.",
        created_at=SEEN_AT,
        completed_at=SEEN_AT,
    )
    figures = statement.invoice_figures(december)
    subscription = Subscription.objects.get(account=shop)
    return {
        "account": shop,
        "site_url": "https://billing.example",
        "invoice": december,
        "figures": figures,
        "settled": statement.settlement_words(figures),
        "attempt": attempt,
        "next_retry_at": SEEN_AT + timedelta(days=2),
        "url": "https://billing.example/pay/confirm/token/",
        "reminder": 2,
        "reason": held.dunning.held_reason,
        "meter": "Convert clicks",
        "used": 1500,
        "included": 1000,
        "threshold": 100,
        "hard_cap": True,
        "period_start": DEC,
        "period_end": JAN,
        "last_day": periods.format_day(subscription.current_period_end - timedelta(days=1)),
        "first_day": periods.format_day(subscription.current_period_end),
        "last_period": periods.format_period(DEC, JAN),
        # refund_succeeded (billing.refunds): a refund of part of a credit note.
        "refund": Refund(
            amount_minor=2000,
            currency="USD",
            credit_note=Invoice(
                kind="credit_note", number="2026-000999", description="Outage on 3 November"
            ),
        ),
        "card": "Visa •••• 4242",
        "account_credit_minor": 1000,
        # ticket_dispute_decided (billing.ticket_disputes): accepted after the close, credited.
        "dispute": TicketDispute(
            account=shop,
            ticket="1204-0",
            reason="auto_reply_loop",
            status="accepted",
            outcome="credited",
            credited_minor=4000,
            decision="Accepted: credit note 2026-000999 gives back $40.00 (before tax).",
            credit_note=Invoice(kind="credit_note", number="2026-000999", total_minor=-4000),
        ),
        "credited_minor": 4000,
        "automatic": False,
    }


def test_no_merchant_email_shows_a_rule_id_an_iso_date_or_a_code(rich, settings):
    from pathlib import Path

    sent = {f"sent: {m.subject}": m for m in mail.outbox}
    read = {}
    for name, message in sent.items():
        read[name] = message.subject + " " + message.body
        for body, kind in getattr(message, "alternatives", []):
            if kind == "text/html":
                read[name + " (html)"] = visible(body)
    assert any("on hold" in name for name in read)
    # Every template, with the context its callers give: the emails no flow above sent too.
    context = _rich_context(rich)
    folder = Path(settings.BASE_DIR) / "templates" / "emails"
    for path in sorted(folder.glob("*.txt")) + sorted(folder.glob("*.html")):
        if path.name == "base.html":
            continue
        rendered = render_to_string(f"emails/{path.name}", context)
        read[path.name] = visible(rendered) if path.suffix == ".html" else rendered
    assert (
        "Covers: Usage Nov 1 – Nov 30, 2026; Fees Dec 1 – Dec 31, 2026"
        in read["payment_succeeded.txt"]
    )
    assert "The limit is reached: campaigns are paused" in read["usage_threshold.txt"]
    problems = {name: faults(text) for name, text in read.items()}
    assert {name: found for name, found in problems.items() if found} == {}
