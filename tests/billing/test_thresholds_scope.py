"""The threshold check looks closely only at accounts whose usage could still cross a threshold:
none after a close (every period starts empty), none below half the smallest allowance, none
told at 100 % already."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from billing.thresholds import usage_thresholds_notify
from plans.terms import TermsBook
from tests.billing.test_run_billing import ingest_many, tickets
from tests.billing.test_thresholds import T0


@pytest.fixture
def terms_built(monkeypatch):
    """The accounts whose terms the check built."""
    built: list[int] = []
    original = TermsBook.subscription_terms

    def spy(self, subscription, *args, **kwargs):
        built.append(subscription.account_id)
        return original(self, subscription, *args, **kwargs)

    monkeypatch.setattr(TermsBook, "subscription_terms", spy)
    return built


def test_only_accounts_that_may_cross_a_threshold_are_priced(
    make_account, terms_built, django_capture_on_commit_callbacks
):
    with time_machine.travel(T0, tick=False):
        idle = make_account(slug="idle", plan="basic")
        light = make_account(slug="light", plan="basic")  # 300 included
        busy = make_account(slug="busy", plan="starter")  # 50 included
    day = T0 + timedelta(days=2)
    # 10 tickets: below half of the smallest helpdesk allowance of the catalog (Starter's 50).
    ingest_many(light, tickets(10, T0 + timedelta(days=1)), now=day)
    ingest_many(busy, tickets(60, T0 + timedelta(days=1)), now=day)
    with django_capture_on_commit_callbacks(execute=True):
        assert usage_thresholds_notify(as_of=day) == 1
    assert terms_built == [busy.pk]
    assert [m.to for m in mail.outbox] == [["billing@busy.example"]]
    assert idle.pk not in terms_built
    # Told at 100 %: nothing more to tell this period, so nothing is priced again.
    terms_built.clear()
    assert usage_thresholds_notify(as_of=day + timedelta(hours=1)) == 0
    assert terms_built == []
