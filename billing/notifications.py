"""Billing emails: HTML and text from templates/emails/, sent once the transaction commits.

Development writes each message to a file under var/mail/ (EMAIL_URL unset)."""

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from accounts.models import Account

SUBJECTS = {
    "confirmation_required": "Please confirm your payment for invoice {number}",
    "confirmation_reminder": "Reminder: please confirm your payment for invoice {number}",
    "payment_failed": "Payment failed for invoice {number}",
    "payment_succeeded": "Receipt for invoice {number}",
    "subscription_suspended": "Your subscription is suspended: invoice {number} is unpaid",
    "subscription_reactivated": "Your subscription is active again",
}


def send(template: str, account: Account, **context) -> None:
    invoice = context.get("invoice")
    context.update(account=account, site_url=settings.SITE_URL)
    subject = SUBJECTS[template].format(number=invoice.number if invoice else "")
    text = render_to_string(f"emails/{template}.txt", context)
    html = render_to_string(f"emails/{template}.html", context)
    transaction.on_commit(
        lambda: send_mail(subject, text, None, [account.billing_email], html_message=html)
    )
