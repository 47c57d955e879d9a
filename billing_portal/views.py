"""The merchant's landing page: accounts, subscription, payment method, payment history."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.templatetags.static import static

from accounts.models import Membership, may_manage_billing
from accounts.principals import accounts_for_user
from billing import payments, statement
from billing.selectors import invoices_recent
from console.access import is_operator
from plans.selectors import subscription_current


@login_required
def home(request):
    memberships = Membership.objects.filter(user=request.user)
    if request.user.is_staff and not memberships.exists():
        # Operators work in the console: merchant pages are for members of an account.
        return redirect("console:queue" if is_operator(request.user) else "admin:index")
    roles = dict(Membership.objects.filter(user=request.user).values_list("account_id", "role"))
    rows = []
    for account in accounts_for_user(request.user).filter(pk__in=roles).order_by("name"):
        manages = may_manage_billing(roles.get(account.pk))
        card = payments.default_payment_method(account.pk)
        invoices = []
        if manages:
            recent = invoices_recent(account=account, limit=24)
            figures = statement.invoices_figures(recent)  # what is due, as on every surface
            for invoice in recent:
                attempts = sorted(invoice.attempts.all(), key=lambda a: a.number)
                last = attempts[-1] if attempts else None
                waiting = (
                    invoice.status == "requires_confirmation"
                    and last
                    and last.status == "requires_action"
                )
                invoices.append(
                    {
                        "invoice": invoice,
                        "confirm_url": payments.confirmation_path(last) if waiting else "",
                        "reason": last.failure_reason
                        if last and invoice.status == "past_due"
                        else "",
                        "can_retry": card is not None,
                        "figures": figures[invoice.pk],
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


def favicon(request):
    """Browsers ask for /favicon.ico whatever a page links (the admin's pages link nothing)."""
    return redirect(static("favicon.svg"), permanent=True)
