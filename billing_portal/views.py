"""The merchant's landing page: accounts, subscription, payment method, payment history; the
page a locked-out login gets."""

import math

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils import timezone

from accounts import logins
from accounts.models import Membership, may_manage_billing
from accounts.principals import accounts_for_user
from billing import payments, statement
from billing.selectors import invoices_recent
from console.access import is_operator
from plans.selectors import subscription_current, subscription_last_ended


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
        subscription = subscription_current(account=account)
        rows.append(
            {
                "account": account,
                "subscription": subscription,
                "ended": None if subscription else subscription_last_ended(account=account),
                "manages_billing": manages,
                "card": card,
                "invoices": invoices,
            }
        )
    return render(request, "home.html", {"accounts": rows})


def favicon(request):
    """Browsers ask for /favicon.ico whatever a page links (the admin's pages link nothing)."""
    return redirect(static("favicon.svg"), permanent=True)


def login_locked_out(request, original_response=None, credentials=None):
    """The answer to a login refused by django-axes (AXES_LOCKOUT_CALLABLE), on /login/ and on
    the admin's login alike: what happened, when to come back, and who can unlock it sooner."""
    now = timezone.now()
    username = logins.login_username(request, credentials)
    address = logins.client_address(request)
    # None only if axes counted the failures somewhere we do not read: a whole cool-off is the
    # longest the lock can last.
    ends_at = logins.lock_ends_at(username=username, address=address, now=now)
    ends_at = ends_at or now + logins.cool_off()
    minutes = max(1, math.ceil((ends_at - now).total_seconds() / 60))
    response = render(
        request,
        "registration/locked_out.html",
        {"ends_at": ends_at, "minutes": minutes, "failure_limit": settings.AXES_FAILURE_LIMIT},
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response
