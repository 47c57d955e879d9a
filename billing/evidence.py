"""The evidence pack of a card dispute: what an operator sends Stripe to contest it, in one zip
built in memory (nothing is written to disk; the operator downloads it from the console).

- `invoice-<number>.pdf`: the disputed invoice, as the merchant downloads it (billing.pdf);
- `usage-<number>.csv`: every unit billed in the invoice's usage period, one row per ticket
  (or session) and meter, with the rule ids that counted it (the same verdicts "Why was this
  billed?" reads);
- `account.txt`: the account, the dispute, the account's acceptances of the Terms of Service
  (version, when, who, from which address, the exact words shown; accounts.TermsAcceptance,
  recorded with each card saved), its members with their last login, every successful login
  of theirs from 90 days before the disputed charge until now (when, address, browser;
  accounts.LoginRecord, kept 400 days) and the failed logins axes holds for them. An account
  whose card was saved before acceptances were kept says so rather than leaving it out.
"""

import csv
import io
import zipfile
from datetime import datetime, timedelta

from axes.models import AccessAttempt
from django.utils import timezone

from accounts.selectors import member_login_list, terms_acceptance_list
from metering.models import Charge, ChargeStatus

from . import selectors
from .models import Dispute, Invoice, UsageClose
from .pdf import render_invoice_pdf

# Units whose verdict billed them (or will, once their wait ends).
BILLED = (ChargeStatus.FINAL, ChargeStatus.PENDING)
# The logins shown start this long before the disputed charge (and run until the pack is made).
LOGINS_BEFORE_CHARGE = timedelta(days=90)


def usage_period(invoice: Invoice) -> tuple[datetime, datetime]:
    """The usage the invoice billed: its closed period's, else the period it is for."""
    close = UsageClose.objects.filter(invoice=invoice).only("period_start", "period_end").first()
    if close is not None:
        return close.period_start, close.period_end
    return invoice.period_start, invoice.period_end


def usage_csv(*, invoice: Invoice) -> str:
    """The period's billed units, per subject and meter, with the rules that counted them."""
    start, end = usage_period(invoice)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["kind", "ticket_or_session", "meter", "unit", "status", "billable_at", "rules"]
    )
    rows = (
        Charge.objects.filter(
            account_id=invoice.account_id,
            period_start__gte=start,
            period_start__lt=end,
            status__in=BILLED,
        )
        .order_by("billable_at", "subject", "meter", "unit")
        .values_list("subject_kind", "subject", "meter", "unit", "status", "billable_at", "rules")
    )
    for kind, subject, meter, unit, status, billable_at, rules in rows.iterator(chunk_size=2000):
        at = billable_at.isoformat() if billable_at else ""
        writer.writerow([kind, subject, meter, unit, status, at, " ".join(rules)])
    return out.getvalue()


def _account_text(dispute: Dispute) -> str:
    invoice = dispute.invoice
    account = invoice.account
    lines = [
        f"Account: {account.name} ({account.slug}), billing email {account.billing_email}",
        f"Opened: {account.created_at.isoformat() if account.created_at else 'unknown'}",
        f"Invoice: {invoice.number}, {invoice.get_status_display()}",
        f"Dispute: {dispute.stripe_dispute_id}, {dispute.get_status_display()}, "
        f"reason {dispute.reason or 'not given'}, {dispute.amount_minor} {dispute.currency} "
        "(minor units)",
        "",
        *_terms_lines(account),
        "",
        "Members, with their last successful login (UTC):",
    ]
    members = (
        account.memberships.select_related("user").order_by("user__username").only("role", "user")
    )
    usernames = []
    for membership in members:
        user = membership.user
        usernames.append(user.get_username())
        last = user.last_login.isoformat() if user.last_login else "never"
        lines.append(f"- {user.get_username()} ({membership.role}): {last}")
    lines += [
        "",
        *_login_lines(dispute),
        "",
        "Failed logins held by the login throttle (axes), latest first:",
    ]
    failures = AccessAttempt.objects.filter(username__in=usernames).order_by("-attempt_time")[:50]
    for failure in failures:
        lines.append(
            f"- {failure.username} from {failure.ip_address}: {failure.failures_since_start} "
            f"failure(s), last {failure.attempt_time.isoformat()}"
        )
    if not failures:
        lines.append("- none")
    return "\n".join(lines) + "\n"


def _terms_lines(account) -> list[str]:
    acceptances = terms_acceptance_list(account=account)
    if not acceptances:
        return [
            "Terms of Service: No acceptance recorded (the card was saved before acceptances "
            "were kept)."
        ]
    lines = ["Terms of Service accepted (UTC), oldest first:"]
    for acceptance in acceptances:
        where = (
            "through the partner API (the partner asserts its merchant accepted)"
            if acceptance.source == acceptance.Source.PARTNER_API
            else "on the Payment method page"
        )
        lines += [
            f"- {acceptance.accepted_at.isoformat()}: version {acceptance.version}, by "
            f"{acceptance.accepted_by} {where}, from {acceptance.ip_address or 'unknown'} "
            f"({acceptance.user_agent or 'no user agent'}), with the card "
            f"{acceptance.card or 'unknown'}",
            f"  Text shown: {acceptance.text}",
        ]
    return lines


def _login_lines(dispute: Dispute) -> list[str]:
    attempt = dispute.attempt
    charged_at = attempt.completed_at or attempt.created_at
    since = charged_at - LOGINS_BEFORE_CHARGE
    lines = [
        f"Members' successful logins from {since.isoformat()} (90 days before the charge of "
        f"{charged_at.isoformat()}) to {timezone.now().isoformat()}, oldest first:"
    ]
    logins = member_login_list(account=dispute.invoice.account, since=since)
    for login in logins:
        lines.append(
            f"- {login.at.isoformat()} {login.user.get_username()} from "
            f"{login.ip_address or 'unknown'} ({login.user_agent or 'no user agent'})"
        )
    if not logins:
        lines.append("- none")
    return lines


def evidence_pack(*, dispute: Dispute) -> tuple[str, bytes]:
    """The pack's file name and its bytes (a zip)."""
    invoice = Invoice.objects.select_related("account").get(pk=dispute.invoice_id)
    dispute = Dispute.objects.select_related("attempt").get(pk=dispute.pk)
    number = invoice.number or str(invoice.pk)
    dispute.invoice = invoice
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as pack:
        pdf = render_invoice_pdf(selectors.invoice_document(invoice=invoice))
        pack.writestr(f"invoice-{number}.pdf", pdf)
        pack.writestr(f"usage-{number}.csv", usage_csv(invoice=invoice))
        pack.writestr("account.txt", _account_text(dispute))
    return f"dispute-{dispute.stripe_dispute_id}-evidence.zip", buffer.getvalue()
