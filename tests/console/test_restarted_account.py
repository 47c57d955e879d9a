"""The operator console after a merchant started again: the account page shows the live
subscription (not the one that ended) and the restart in the account's audit log."""

import pytest

from billing import restart
from billing.models import Invoice
from tests.billing.pages_fixtures import account  # noqa: F401
from tests.billing.test_start_again import at, ended, text  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_console_shows_the_new_subscription_and_the_restart_in_the_account_log(ended, ops):  # noqa: F811
    with at():
        before = text(ops.get(f"/console/accounts/{ended.pk}/"))
        restart.subscription_restart(account=ended, plan_code="pro", interval="month")
        after = text(ops.get(f"/console/accounts/{ended.pk}/"))
    assert "Basic · monthly" in before and "Canceled" in before
    assert "Pro · monthly" in after and "Basic · monthly" not in after
    assert "Dec 4, 2026 – Jan 4, 2027" in after  # the new cycle, a year on both sides
    # The account's audit log: the subscription started again, then its first invoice.
    first = Invoice.objects.filter(account=ended).latest("issued_at", "pk")
    assert "subscription: started" in after and "started again" in after
    assert first.reason == "subscription_start" and first.number in after
