"""The merchant's landing page after login."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from accounts.principals import accounts_for_user
from plans.selectors import subscription_current


@login_required
def home(request):
    accounts = [
        (account, subscription_current(account=account))
        for account in accounts_for_user(request.user).order_by("name")
    ]
    return render(request, "home.html", {"accounts": accounts})
