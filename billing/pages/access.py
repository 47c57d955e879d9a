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

from accounts.form_tokens import already_done, first_submission
from accounts.models import Account
from accounts.selectors import billing_access, is_operator
from audit.models import Source
from audit.services import acting_as

from . import selectors


def billing_page(
    *,
    change: bool = False,
    methods: tuple[str, ...] = ("GET",),
    invoice: bool = False,
    back: str | None = None,
    once: bool = False,
):
    """Wrap a view taking (request, access, ...). `change=True` marks a write: only those who
    manage billing may POST to it; the URL walk in the tests reads these marks.

    The rest is the preamble the pages' forms share, done here once, in this order:
    - `invoice=True`: the URL's `invoice_id` becomes `invoice`, the account's invoice; any other
      id is a 404, as for an account the user is not a member of;
    - `back="<tab>"`: the view gets `back`, that tab's URL, where its form returns;
    - `once=True`: a POST claims its one-time form token before the view runs, so a double
      click or a re-post does nothing more and goes `back` with "already sent". A view that
      validates a form first claims the token itself, after validation: a form sent back with
      its errors keeps its token, and the corrected form is still the first submission."""
    if once and back is None:
        raise TypeError("billing_page(once=True) needs back=: where a re-post goes")

    def decorate(view):
        @login_required
        @functools.wraps(view)
        def wrapper(request, slug: str, *args, **kwargs):
            if slug != slug.lower() and request.method in ("GET", "HEAD"):
                # Slugs are kept in lower case: one address per page, whatever case was typed
                # (redirected before anything is looked up, so it tells nothing either).
                canonical = f"/billing/{slug.lower()}/"
                path = request.get_full_path().replace(f"/billing/{slug}/", canonical, 1)
                return redirect(path, permanent=True)
            access = billing_access(user=request.user, slug=slug)
            if access is None:
                if request.user.is_staff:
                    account = Account.objects.filter(slug=slug.lower()).first()
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
            if invoice:
                kwargs["invoice"] = selectors.invoice_for_account(
                    account=access.account, invoice_id=kwargs.pop("invoice_id")
                )
                if kwargs["invoice"] is None:
                    return render(request, "404.html", status=404)
            if back is not None:
                kwargs["back"] = reverse(f"billing:{back}", kwargs={"slug": access.account.slug})
            if once and request.method == "POST" and not first_submission(request):
                return already_done(request, kwargs["back"])
            with acting_as(source=Source.MERCHANT, user=request.user):  # names them in audit
                return view(request, access, *args, **kwargs)

        wrapper.billing_change = change
        wrapper.billing_methods = methods
        return wrapper

    return decorate
