"""The merchant's landing page: accounts, subscription, payment method, payment history."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from accounts.models import Membership
from accounts.principals import accounts_for_user
from billing import payments
from billing.models import Invoice
from plans.selectors import subscription_current


@login_required
def home(request):
    roles = dict(Membership.objects.filter(user=request.user).values_list("account_id", "role"))
    rows = []
    for account in accounts_for_user(request.user).order_by("name"):
        manages = request.user.is_staff or roles.get(account.pk) in (
            Membership.Role.OWNER,
            Membership.Role.ADMIN,
        )
        card = payments.default_payment_method(account.pk)
        invoices = []
        if manages:
            for invoice in Invoice.objects.filter(account=account, kind="invoice").order_by(
                "-created_at"
            )[:24]:
                attempt = payments.confirmation_attempt(invoice=invoice)
                last = invoice.attempts.order_by("-number").first()
                invoices.append(
                    {
                        "invoice": invoice,
                        "confirm_url": payments.confirmation_path(attempt) if attempt else "",
                        "reason": last.failure_reason
                        if last and invoice.status == "past_due"
                        else "",
                        "can_retry": card is not None,
                    }
                )
        rows.append(
            {
                "account": account,
                "subscription": subscription_current(account=account),
                "manages_billing": manages,
                "card": card,
                "invoices": invoices,
            }
        )
    return render(request, "home.html", {"accounts": rows})
