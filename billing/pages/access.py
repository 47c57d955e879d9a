"""Who may do what on the billing pages, decided once (accounts.selectors.billing_access) and
applied by one decorator to every page, form and file.

- not a member of the account: 404 (the account's existence is not leaked);
- staff without a seat: sent to the operator console (the admin), not merchant pages;
- agents: look at every page, and get 403 on every change;
- owners and admins: change things.
"""

import functools

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.models import Account
from accounts.selectors import billing_access, is_operator
from audit.models import Source
from audit.services import acting_as


def billing_page(*, change: bool = False, methods: tuple[str, ...] = ("GET",)):
    """Wrap a view taking (request, access, ...). `change=True` marks a write: only those who
    manage billing may POST to it; the URL walk in the tests reads these marks."""

    def decorate(view):
        @login_required
        @functools.wraps(view)
        def wrapper(request, slug: str, *args, **kwargs):
            access = billing_access(user=request.user, slug=slug)
            if access is None:
                if request.user.is_staff:
                    account = Account.objects.filter(slug=slug).first()
                    if account is not None and is_operator(request.user):
                        return redirect(reverse("console:account", args=[account.pk]))
                    if account is not None:
                        return redirect(reverse("admin:accounts_account_change", args=[account.pk]))
                return render(request, "404.html", status=404)
            if request.method not in methods:  # only members learn which methods exist
                return HttpResponseNotAllowed(methods)
            if change and not access.can_change:
                return render(
                    request,
                    "billing/forbidden.html",
                    {"account": access.account, "access": access},
                    status=403,
                )
            with acting_as(source=Source.MERCHANT, user=request.user):  # names them in audit
                return view(request, access, *args, **kwargs)

        wrapper.billing_change = change
        wrapper.billing_methods = methods
        return wrapper

    return decorate
