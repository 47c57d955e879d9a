"""Who may use the console, decided by one decorator on every console view: a logged-in staff
member holding `audit.use_console` (the "billing operators" group; the rule itself is
`accounts.selectors.is_operator`, which the billing pages share). Anyone else logged in gets the
same 404 as a page that does not exist, so the console's routes are not advertised.

Every view runs inside `acting_as(operator)`: the audit rows written by the services it calls
name the operator."""

import functools

from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseNotAllowed
from django.shortcuts import render

from accounts.selectors import is_operator
from audit.models import Source
from audit.services import acting_as


def operator_page(*, methods: tuple[str, ...] = ("GET",)):
    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not is_operator(request.user):
                return render(request, "404.html", status=404)
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            with acting_as(source=Source.OPERATOR, user=request.user):
                return view(request, *args, **kwargs)

        wrapper.console_page = True
        return wrapper

    return decorate
