"""Usage threshold emails at 80 % and 100 % of each allowance, once per period each."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from billing.run import run_billing
from tests.billing.test_run_billing import ingest_many, tickets

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def bill(django_capture_on_commit_callbacks):
    """run_billing, with the emails it queues on commit actually sent."""

    def run(as_of):
        with django_capture_on_commit_callbacks(execute=True):
            return run_billing(as_of=as_of)

    return run


def test_80_then_100_percent_emails_once_each_per_period(make_account, bill):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")  # 300 tickets included
    bill(T0)
    ingest_many(account, tickets(239, T0 + timedelta(days=1)), now=T0 + timedelta(days=2))
    bill(T0 + timedelta(days=2))
    assert mail.outbox == []  # 79.7 %: nothing yet
    ingest_many(account, tickets(1, T0 + timedelta(days=3)), now=T0 + timedelta(days=3))
    bill(T0 + timedelta(days=3))
    [eighty] = mail.outbox
    assert eighty.to == ["billing@shop.example"]
    assert eighty.subject == "You have used 80% of your helpdesk tickets this period"
    assert "You have used 240 helpdesk tickets in the period Nov 1 – Nov 30, 2026" in eighty.body
    assert "that reaches 80% of the 300 included" in eighty.body
    assert "$40.00 per block of 100" in eighty.body
    assert "240" in eighty.alternatives[0][0]
    bill(T0 + timedelta(days=4))
    assert len(mail.outbox) == 1  # once per period
    ingest_many(account, tickets(60, T0 + timedelta(days=5)), now=T0 + timedelta(days=5))
    bill(T0 + timedelta(days=5))
    assert [m.subject[:20] for m in mail.outbox] == ["You have used 80% of", "You have used 100% o"]
    assert "billed at $40.00 per block of 100 on your next invoice" in mail.outbox[1].body


def test_a_jump_past_100_percent_sends_one_email_not_two(make_account, bill):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="starter")  # 50 included
    ingest_many(account, tickets(60, T0 + timedelta(days=1)), now=T0 + timedelta(days=2))
    bill(T0 + timedelta(days=2))
    assert [m.subject for m in mail.outbox] == [
        "You have used 100% of your helpdesk tickets this period"
    ]
    assert "$0.40 each" in mail.outbox[0].body
