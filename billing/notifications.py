"""Billing emails: HTML and text from templates/emails/, sent once the transaction commits.

Development writes each message to a file under var/mail/ (EMAIL_URL unset)."""

from collections.abc import Sequence

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from accounts.models import BILLING_MANAGER_ROLES, Account
from audit.services import audit_record

from . import statement

SUBJECTS = {
    "confirmation_required": "Please confirm your payment for invoice {number}",
    "confirmation_reminder": "Reminder: please confirm your payment for invoice {number}",
    "payment_failed": "Payment failed for invoice {number}",
    "card_required": "Add a card to pay invoice {number}",
    "payment_succeeded": "Receipt for invoice {number}",
    # billing.refunds: part of a credit note went back to the card.
    "refund_succeeded": "Refund for invoice {number}",
    # billing.disputes: a card dispute was lost and an operator asked for another card.
    "dispute_card_requested": "Invoice {number} is due again: your bank reversed its payment",
    # billing.ticket_disputes: a contested ticket was decided (by an operator or automatically).
    "ticket_dispute_decided": "Your contested ticket {ticket}: {verdict}",
    # billing.spike_guard: usage held for review, once per anomaly (a spike) or batch (a loop).
    "usage_anomaly": "Unusual usage held for review: {meter_label}",
    "usage_loop_held": "{held} tickets held for review: a suspected mail loop",
    "subscription_suspended": "Your subscription is suspended: invoice {number} is unpaid",
    "subscription_reactivated": "Your subscription is active again",
    "subscription_reactivated_by_operator": "Your subscription is active again",
    "invoice_held": "Invoice {number} is on hold: it is over your approved spending cap",
    # Usage billed through Shopify (billing.shopify_usage): held over the cap, or held for want
    # of an active app subscription.
    "shopify_cap_reached": "Usage is held: approve a higher usage cap in Shopify",
    "shopify_usage_held": "Usage on invoice {number} is held: it cannot go to Shopify yet",
    # The cancellation's three moments, one email each (billing.changes, billing.closing).
    "cancellation_scheduled": "Your subscription ends: it runs until {last_day}",
    "cancellation_undone": "Your subscription continues: it renews from {first_day}",
    "subscription_ended": "Your subscription has ended",
    # The Shopify channel (billing.shopify_billing, billing.shopify_webhooks).
    "shopify_approval_needed": "Approve your subscription in Shopify",
    "shopify_declined": "Your subscription was declined in Shopify",
    "shopify_frozen": "Shopify froze your app subscription: your Shopify bill is unpaid",
    "shopify_cap_approaching": "You have used 90% of your approved usage limit in Shopify",
}


def send(template: str, account: Account, *, also: Sequence[str] = (), **context) -> None:
    """Email the account's billing address (and `also` these addresses) after the commit."""
    invoice = context.get("invoice")
    context.update(account=account, site_url=settings.SITE_URL)
    if invoice is not None and invoice.pk is not None:
        # What the email says is owed, paid or credited comes from the statement of account,
        # as on every other surface (never the invoice's total alone).
        figures = statement.invoice_figures(invoice)
        context.setdefault("figures", figures)
        context.setdefault("settled", statement.settlement_words(figures))
    subject = SUBJECTS[template].format(**{**context, "number": invoice.number if invoice else ""})
    text = render_to_string(f"emails/{template}.txt", context)
    html = render_to_string(f"emails/{template}.html", context)
    to = list(dict.fromkeys([account.billing_email, *also]))  # once each, billing email first
    # Kept in the audit log (same transaction): operators see which emails a customer got.
    audit_record(
        action="email.sent",
        obj=invoice or account,
        account_id=account.pk,
        after={"template": template, "to": to},
        reason=subject,
    )
    transaction.on_commit(lambda: send_mail(subject, text, None, to, html_message=html))


def billing_managers(account: Account) -> list[str]:
    """The addresses of the account's members who manage billing (owners and admins)."""
    return sorted(
        account.memberships.filter(role__in=BILLING_MANAGER_ROLES)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
