"""Who may do what on the billing pages, decided once (accounts.selectors.billing_access) and
applied by one decorator to every page, form and file.

- not a member of the account: 404 (the account's existence is not leaked);
- staff without a seat: sent to the operator console (the admin), not merchant pages;
- agents: look at every page, and get 403 on every change;
- owners and admins: change things.
"""

import functools
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.models import Account, IdempotencyRecord
from accounts.selectors import billing_access
from audit.models import Source
from audit.services import acting_as
from console.access import is_operator


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


# --- double clicks ---------------------------------------------------------------------------

TOKEN_FIELD = "form_token"


def new_form_token() -> str:
    return uuid.uuid4().hex


def first_submission(request) -> bool:
    """True the first time a form's one-time token is posted; False for a double click or a
    re-post of the same form. The unique (scope, key) row decides, so two concurrent clicks
    cannot both pass."""
    token = request.POST.get(TOKEN_FIELD, "")
    if not token:
        return True  # forms without a token (none of ours) are not protected
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                scope=f"page:user:{request.user.pk}", key=token[:255], request_hash=""
            )
    except IntegrityError:
        return False
    return True


def already_done(request, to: str):
    messages.info(request, "That form was already sent: nothing more was done.")
    return redirect(to)
